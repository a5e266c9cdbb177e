"""gunicorn settings for the service: gthread workers, graceful shutdown that drains the pool.

    gunicorn -c python:service.serving.gunicorn_conf 'service:create_app()'

Concurrency is bounded by the MQTT pool (one flow per connection, AWS's rule), so each worker
gets a few more threads than connections: the extra requests wait for a free connection up to
PROVISIONER_POOL_WAIT_SECONDS, then get 503 with Retry-After.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from service.callers import presented
from service.config import Settings, SettingsError
from service.http import framing

try:
    _settings = Settings.from_env()
except SettingsError as error:
    print(f"service: invalid settings:\n{error}", file=sys.stderr)
    sys.exit(2)

bind: str | list[str] = _settings.bind
if _settings.proxy_socket is not None:
    # `make run`'s TLS front (nginx) reaches the workers on a socket of its own (service.serving.tls).
    bind = [_settings.bind, f"unix:{_settings.proxy_socket}"]
if _settings.behind_proxy or _settings.proxy_socket is not None:
    # nginx passes a client certificate on in a header (URL-encoded PEM): room for the largest
    # chain the service reads (service.callers.presented refuses more, by name). Clients' own
    # headers are bounded by nginx (large_client_header_buffers).
    limit_request_field_size = presented.MAX_HEADER_LENGTH
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


# The metrics directory this master made (removed at exit), or None when it was configured.
_made_metrics_dir: Path | None = None


def on_starting(server: Any) -> None:
    """Before any worker exists: the metrics directory, and in local mode the emulator (started
    once, owned by the master; the workers it forks inherit an environment pointing at it)."""
    _prepare_metrics_dir()
    from service.serving import local_mode as local

    local.export_for_workers(os.environ, server.cfg.bind[0])


def _prepare_metrics_dir() -> None:
    """Point prometheus_client at this instance's own, empty directory (service.metrics).

    prometheus_client picks its multiprocess mode when it is first imported, from the
    environment. The master never imports it before this hook, and workers import it after the
    fork, so setting the variable here reaches every worker. A directory left by an earlier run
    holds counts of processes that are gone: it is emptied.
    """
    global _made_metrics_dir
    values = sys.modules.get("prometheus_client.values")
    if values is not None and values.ValueClass is values.MutexValue:
        raise RuntimeError("prometheus_client was imported in gunicorn's master before on_starting")
    if _settings.metrics_dir is not None:
        directory = _settings.metrics_dir.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
    else:
        directory = _made_metrics_dir = Path(tempfile.mkdtemp(prefix="provisioner-metrics-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def child_exit(server: Any, worker: Any) -> None:
    """A worker ended: its live gauges (pool connections) no longer count; its counters do."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]


def on_exit(server: Any) -> None:
    if _made_metrics_dir is not None:
        shutil.rmtree(_made_metrics_dir, ignore_errors=True)


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
