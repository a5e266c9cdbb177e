# The provisioning service: slim, non-root, gunicorn with gthread workers.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY emulator ./emulator
COPY service ./service
RUN pip install . && useradd --create-home --uid 10001 provisioner \
    && mkdir -p /var/lib/provisioner && chown provisioner /var/lib/provisioner
USER provisioner
# The embedded store (SQLite) unless PROVISIONER_DATABASE_URL names a PostgreSQL database.
ENV PROVISIONER_DATA_DIR=/var/lib/provisioner
VOLUME /var/lib/provisioner

ENV PROVISIONER_BIND=0.0.0.0:8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2)" || exit 1
CMD ["gunicorn", "-c", "python:service.gunicorn_conf", "service:create_app()"]
