"""gunicorn settings for the service: gthread workers, graceful shutdown that drains the pool.

    gunicorn -c python:service.gunicorn_conf 'service:create_app()'

Concurrency is bounded by the MQTT pool (one flow per connection, AWS's rule), so each worker
gets a few more threads than connections: the extra requests wait for a free connection up to
PROVISIONER_POOL_WAIT_SECONDS, then get 503 with Retry-After.
"""

from __future__ import annotations

import os
from typing import Any

bind = os.environ.get("PROVISIONER_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("PROVISIONER_WORKERS", "2"))
worker_class = "gthread"
threads = int(
    os.environ.get("PROVISIONER_THREADS", str(int(os.environ.get("PROVISIONER_POOL_SIZE", "4")) * 2))
)
# SIGTERM: stop accepting, let in-flight requests finish within this, then worker_exit.
graceful_timeout = int(os.environ.get("PROVISIONER_GRACEFUL_TIMEOUT", "30"))
timeout = 60
preload_app = False  # nothing that owns a thread or a socket may exist before the fork
accesslog = None  # the service writes its own access log line (no secrets in it)


def on_starting(server: Any) -> None:
    """Local mode under plain gunicorn: the master starts the emulator (once, owned by it) and
    the workers it forks inherit an environment pointing at it."""
    from service import local_mode as local

    local.export_for_workers(os.environ, bind)


def worker_exit(server: Any, worker: Any) -> None:
    """Disconnect this worker's MQTT pool once its requests are done."""
    app = getattr(worker, "wsgi", None)
    for name in ("provisioner", "store"):
        holder = getattr(app, "extensions", {}).get(name) if app is not None else None
        if holder is not None:
            holder.close()


def post_worker_init(worker: Any) -> None:
    """Connect this worker's pool now, so the first request does not pay for the connects."""
    app = getattr(worker, "wsgi", None)
    for name in ("provisioner", "store"):  # the store also migrates its schema here
        holder = getattr(app, "extensions", {}).get(name) if app is not None else None
        if holder is not None:
            holder.get()
