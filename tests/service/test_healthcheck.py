"""The image's HEALTHCHECK (`python -m service.serving.healthcheck`) asks where PROVISIONER_BIND says
gunicorn listens: TCP with a wildcard host asked on loopback, or a unix socket."""

from __future__ import annotations

import os
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from repository import REPO_ROOT

from service.serving.healthcheck import check


class _Healthz(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - http.server's name
        pass


class _Failing(_Healthz):
    status = 503


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


@contextmanager
def _serving(server: socketserver.BaseServer) -> Iterator[socketserver.BaseServer]:
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def tcp_port() -> Iterator[int]:
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), _Healthz)) as server:
        yield server.server_address[1]


def test_a_wildcard_bind_is_checked_on_loopback(tcp_port: int) -> None:
    assert check(f"0.0.0.0:{tcp_port}") is None
    assert check(f"127.0.0.1:{tcp_port}") is None


def test_a_unix_socket_bind_is_checked_there(tmp_path: Path) -> None:
    path = tmp_path / "gunicorn.sock"
    with _serving(_UnixHTTPServer(str(path), _Healthz)):
        assert check(f"unix:{path}") is None


def test_nothing_listening_or_not_200_is_unhealthy(tmp_path: Path) -> None:
    with _serving(ThreadingHTTPServer(("127.0.0.1", 0), _Failing)) as server:
        port = server.server_address[1]
        assert check(f"0.0.0.0:{port}") == f"GET /healthz at 0.0.0.0:{port}: 503"
    problem = check(f"unix:{tmp_path / 'absent.sock'}")
    assert problem is not None and problem.startswith(f"GET /healthz at unix:{tmp_path / 'absent.sock'}: ")


def test_the_command_follows_provisioner_bind(tcp_port: int) -> None:
    env = {**os.environ, "PROVISIONER_BIND": f"0.0.0.0:{tcp_port}", "PROVISIONER_API_KEYS": "k" * 24}
    ok = subprocess.run(
        [sys.executable, "-m", "service.serving.healthcheck"], env=env, cwd=REPO_ROOT, timeout=30
    )
    assert ok.returncode == 0
    env["PROVISIONER_BIND"] = "127.0.0.1:1"  # nothing listens on port 1
    failed = subprocess.run(
        [sys.executable, "-m", "service.serving.healthcheck"],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=30,
    )
    assert failed.returncode == 1 and b"unhealthy: GET /healthz at 127.0.0.1:1" in failed.stderr
