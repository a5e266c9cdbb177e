# The provisioning service, with the emulator (local mode) and the factory CLI (iot-factory).
# Stage 1 installs the lock's exact versions (requirements/runtime.txt, with hashes) and the
# project into a venv; the final stage copies only that venv: no source tree, build/ or
# *.egg-info. Runs as a non-root user whose one writable place is /var/lib/provisioner.
FROM python:3.11-slim AS build

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/provisioner
COPY requirements/runtime.txt /tmp/runtime.txt
RUN /opt/provisioner/bin/pip install --require-hashes -r /tmp/runtime.txt
WORKDIR /src
COPY pyproject.toml README.md ./
COPY emulator ./emulator
COPY service ./service
COPY provisioner_client ./provisioner_client
# --no-deps: every dependency came from the lock above; pip check proves none is missing.
RUN /opt/provisioner/bin/pip install --no-deps . && /opt/provisioner/bin/pip check


FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PATH=/opt/provisioner/bin:$PATH
RUN useradd --create-home --uid 10001 provisioner \
    && mkdir -p /var/lib/provisioner && chown provisioner /var/lib/provisioner
COPY --from=build /opt/provisioner /opt/provisioner
USER provisioner
WORKDIR /var/lib/provisioner
# The embedded store (SQLite) unless PROVISIONER_DATABASE_URL names a PostgreSQL database; in
# local mode (no PROVISIONER_IOT_ENDPOINT) the emulator's CA, registry and generated key too.
ENV PROVISIONER_DATA_DIR=/var/lib/provisioner \
    PROVISIONER_EMULATOR_DATA_DIR=/var/lib/provisioner/emulator \
    PROVISIONER_BIND=0.0.0.0:8000
VOLUME /var/lib/provisioner

EXPOSE 8000
# GET /healthz wherever PROVISIONER_BIND puts gunicorn (service/serving/healthcheck.py).
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s CMD ["python", "-m", "service.serving.healthcheck"]
CMD ["gunicorn", "-c", "python:service.serving.gunicorn_conf", "service:create_app()"]
