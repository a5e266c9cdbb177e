"""The nginx in front of gunicorn, in both shapes (`python -m service.serving.production`, `make run`'s
mutual-TLS front): its configuration rendered from `nginx.conf.template` (package data beside this
module, so an installed wheel has it too), where its binary is, and when it may start (once
gunicorn listens).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from importlib import resources
from pathlib import Path

from service.callers import enrollment_csv
from service.callers.devices.certificates import MAX_CRL_REQUEST_BYTES
from service.serving.tls import TlsListener, header_line

TEMPLATE = "nginx.conf.template"  # in this package
# nginx buffers a body up to the limit in memory; the margin covers chunked framing overhead.
BODY_BUFFER_MARGIN = 16 * 1024
PROBLEM_BASE = "https://iot-provisioner.dev/problems/"
# How long nginx keeps a resolver's answer (render_nginx_config's `resolver`).
RESOLVE_VALID_SECONDS = 2


def render_nginx_config(
    *,
    listen: str | None,
    upstream: str,
    run_dir: Path,
    max_body_bytes: int,
    as_root: bool = False,
    resolver: str | None = None,
    rate_per_address: int = 100,
    metrics: bool = False,
    tls: TlsListener | None = None,
) -> str:
    """nginx.conf for the service. `upstream` is nginx's form: `unix:/path` or `host:port`.
    `listen`: the plain HTTP listener (None: none, `make run`'s TLS front); `tls`: the mutual-TLS
    listener (service.serving.tls).

    With `resolver` (a DNS server: Docker's is 127.0.0.11), `upstream`'s name is looked up at
    request time, its answer kept RESOLVE_VALID_SECONDS: compose replicas get new addresses when
    they are recreated, killed or scaled, and nginx would otherwise keep the ones it found at start.

    `rate_per_address`: requests a second from one client address (a burst of twice that), 429
    past it (PROVISIONER_PROXY_RATE_PER_ADDRESS). `metrics`: pass GET /metrics on (else 404 here,
    PROVISIONER_PROXY_METRICS).
    """
    rate_limited = {
        "type": PROBLEM_BASE + "too-many-requests",
        "title": "Too many requests from this address",
        "status": 429,
        "detail": f"More than {rate_per_address} requests a second came from this address; "
        "retry after Retry-After.",
        "requestId": "$request_id",
    }
    metrics_not_here = {
        "type": PROBLEM_BASE + "not-found",
        "title": "Not found",
        "status": 404,
        "detail": "GET /metrics is not served on this listener (PROVISIONER_PROXY_METRICS=true serves it).",
        "requestId": "$request_id",
    }
    upstream_failed = {
        "type": PROBLEM_BASE + "upstream-unavailable",
        "title": "The service did not answer",
        "status": 502,
        "detail": (
            "No instance of the service answered this request in full (one may have stopped while "
            "handling it). Retry after Retry-After with the same Idempotency-Key."
        ),
        "requestId": "$request_id",
    }
    if resolver is None:
        upstream_block = f"upstream service {{\n        server {upstream};\n        keepalive 32;\n    }}"
        proxy_pass = "proxy_pass http://service;"
    else:
        # A variable in proxy_pass is what makes nginx resolve at request time (it round-robins
        # the addresses it gets); there is no keepalive pool without an upstream block.
        upstream_block = (
            f"resolver {resolver} valid={RESOLVE_VALID_SECONDS}s ipv6=off;\n    resolver_timeout 2s;"
        )
        proxy_pass = f"set $service_upstream {upstream};\n            proxy_pass http://$service_upstream;"
    values = {
        "RUN_DIR": str(run_dir),
        "LISTEN": f"listen {listen};" if listen is not None else "# No plain HTTP listener here.",
        "TLS": tls.nginx_lines() if tls is not None else "# None (PROVISIONER_TLS_BIND is not set).",
        "CLIENT_CERTIFICATE": header_line(),
        "UPSTREAM": upstream_block,
        "PROXY_PASS": proxy_pass,
        "MAX_BODY_BYTES": str(max_body_bytes),
        "BODY_BUFFER_BYTES": str(max_body_bytes + BODY_BUFFER_MARGIN),
        "TOO_LARGE_PROBLEM": json.dumps(_too_large(max_body_bytes)),
        "IMPORT_MAX_BYTES": str(enrollment_csv.MAX_BYTES),
        "IMPORT_TOO_LARGE_PROBLEM": json.dumps(_too_large(enrollment_csv.MAX_BYTES)),
        "CRL_MAX_BYTES": str(MAX_CRL_REQUEST_BYTES),
        "CRL_TOO_LARGE_PROBLEM": json.dumps(_too_large(MAX_CRL_REQUEST_BYTES)),
        "RATE_PER_ADDRESS": str(rate_per_address),
        "BURST_PER_ADDRESS": str(2 * rate_per_address),
        "RATE_LIMITED_PROBLEM": json.dumps(rate_limited),
        "METRICS_LOCATION": (
            "# GET /metrics is passed on (PROVISIONER_PROXY_METRICS=true)."
            if metrics
            else _METRICS_DENIED.replace("@@PROBLEM@@", json.dumps(metrics_not_here))
        ),
        "UPSTREAM_FAILED_PROBLEM": json.dumps(upstream_failed),
        # As root nginx's workers would run as nobody, who cannot reach a socket in a private
        # run directory; under any other user they run as that user and this line is ignored.
        "USER": "user root;" if as_root else "",
    }
    text = resources.files("service.serving").joinpath(TEMPLATE).read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"@@{name}@@", value)
    return text


# GET /metrics is not for the public listener unless asked for: the nginx location that says so.
_METRICS_DENIED = """location = /metrics {
            default_type application/problem+json;
            add_header Cache-Control no-store always;
            add_header X-Request-Id $request_id always;
            return 404 '@@PROBLEM@@';
        }"""


def _too_large(limit: int) -> dict[str, object]:
    return {
        "type": PROBLEM_BASE + "payload-too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": f"The body is larger than {limit} bytes.",
        "requestId": "$request_id",
    }


def find_nginx() -> str:
    found = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if found is None:
        raise FileNotFoundError("nginx is not installed (Debian: apt-get install nginx)")
    return found


def wait_for_socket(path: Path, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode} before listening")
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not listen on {path} within {timeout:g} s")
        time.sleep(0.05)
