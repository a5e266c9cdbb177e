"""gunicorn settings for the service: gthread workers, graceful shutdown that drains the pool.

    gunicorn -c python:service.gunicorn_conf 'service:create_app()'

Concurrency is bounded by the MQTT pool (one flow per connection, AWS's rule), so each worker
gets a few more threads than connections: the extra requests wait for a free connection up to
PROVISIONER_POOL_WAIT_SECONDS, then get 503 with Retry-After.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from service.config import Settings, SettingsError
from service.http import framing

try:
    _settings = Settings.from_env()
except SettingsError as error:
    print(f"service: invalid settings:\n{error}", file=sys.stderr)
    sys.exit(2)

bind = _settings.bind
workers = _settings.workers
worker_class = "gthread"
threads = _settings.worker_threads
# SIGTERM: stop accepting, let in-flight requests finish within this, then worker_exit.
graceful_timeout = _settings.graceful_timeout
timeout = 60
preload_app = False  # nothing that owns a thread or a socket may exist before the fork
accesslog = None  # the service writes its own access log line (no secrets in it)
# gunicorn's default control socket is one path per user ($XDG_RUNTIME_DIR or ~/.gunicorn):
# a second instance takes it over and removes it when it stops. Off unless this instance has
# its own path.
control_socket_disable = _settings.control_socket is None
if _settings.control_socket is not None:
    control_socket = str(_settings.control_socket)


def on_starting(server: Any) -> None:
    """Local mode under plain gunicorn: the master starts the emulator (once, owned by it) and
    the workers it forks inherit an environment pointing at it."""
    from service import local_mode as local

    local.export_for_workers(os.environ, server.cfg.bind[0])


def worker_exit(server: Any, worker: Any) -> None:
    """Disconnect this worker's MQTT pool once its requests are done."""
    app = getattr(worker, "wsgi", None)
    for name in ("provisioner", "store"):
        holder = getattr(app, "extensions", {}).get(name) if app is not None else None
        if holder is not None:
            holder.close()


def post_worker_init(worker: Any) -> None:
    """Connect this worker's pool now, so the first request does not pay for the connects."""
    # A body gunicorn cannot frame is answered 400 and closes the connection (http.framing).
    worker.wsgi = framing.for_gunicorn(worker.wsgi)
    app = getattr(worker, "wsgi", None)
    for name in ("provisioner", "store"):  # the store also migrates its schema here
        holder = getattr(app, "extensions", {}).get(name) if app is not None else None
        if holder is not None:
            holder.get()
