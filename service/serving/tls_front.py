"""`make run`'s mutual-TLS front: nginx on PROVISIONER_TLS_BIND in front of gunicorn, which keeps
serving plain HTTP on PROVISIONER_BIND itself (service.serving.tls says why nginx).

The front reaches gunicorn on a unix socket of its own (PROVISIONER_PROXY_SOCKET, in a fresh run
directory): requests that come on it are the front's, and only they may carry a client
certificate (service.callers.presented). Without nginx installed the service runs without the
TLS listener, and says so.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from service.config import Settings
from service.serving import tls
from service.serving.nginx import find_nginx, render_nginx_config, wait_for_socket


class TlsFront:
    def __init__(self, nginx: str, listener: tls.TlsListener, run_dir: Path, settings: Settings) -> None:
        self._nginx = nginx
        self.listener = listener
        self.run_dir = run_dir
        self.socket = run_dir / "gunicorn.sock"
        self._settings = settings
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def prepare(cls, environ: MutableMapping[str, str]) -> TlsFront | None:
        """The front these settings ask for, its socket set in `environ` for gunicorn; None when
        PROVISIONER_TLS_BIND is not set, or nginx is missing (said on stderr)."""
        settings = Settings.from_env(environ)
        listener = tls.listener(settings)
        if listener is None:
            return None
        try:
            nginx = find_nginx()
        except FileNotFoundError as error:
            print(
                f"service: no mutual TLS on {listener.bind}: {error}; serving plain HTTP only",
                file=sys.stderr,
                flush=True,
            )
            return None
        run_dir = Path(tempfile.mkdtemp(prefix="provisioner-tls-")).resolve()
        front = cls(nginx, listener, run_dir, settings)
        environ["PROVISIONER_PROXY_SOCKET"] = str(front.socket)
        return front

    def start(self, gunicorn: subprocess.Popen[bytes]) -> None:
        """Once gunicorn listens on the socket: nginx, in a session of its own (Ctrl-C is ours)."""
        wait_for_socket(self.socket, gunicorn)
        config = self.run_dir / "nginx.conf"
        config.write_text(
            render_nginx_config(
                listen=None,
                upstream=f"unix:{self.socket}",
                run_dir=self.run_dir,
                max_body_bytes=self._settings.max_body_bytes,
                as_root=os.geteuid() == 0,
                rate_per_address=self._settings.proxy_rate_per_address,
                metrics=self._settings.proxy_metrics,
                tls=self.listener,
            )
        )
        self._process = subprocess.Popen(
            [self._nginx, "-p", str(self.run_dir), "-c", str(config)], start_new_session=True
        )
        print(tls.announcement(self.listener), file=sys.stderr, flush=True)

    def stop(self) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGQUIT)  # nginx's graceful stop
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
