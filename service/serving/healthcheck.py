"""`python -m service.serving.healthcheck`: GET /healthz at PROVISIONER_BIND; exit 0 if it answers 200.

The image's HEALTHCHECK. It asks where gunicorn listens (the same settings the service reads),
so moving PROVISIONER_BIND moves the check with it: `HOST:PORT` (a wildcard host is asked on
loopback), `[IPv6]:PORT` or `unix:PATH`.
"""

from __future__ import annotations

import http.client
import socket
import sys

from service.config import Settings, SettingsError

TIMEOUT_SECONDS = 2.0
_WILDCARDS = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT_SECONDS)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(TIMEOUT_SECONDS)
        self.sock.connect(self._path)


def connection_for(bind: str) -> http.client.HTTPConnection:
    """A connection to the address gunicorn binds (gunicorn's forms; its default port is 8000)."""
    if bind.startswith("unix:"):
        return _UnixConnection(bind[len("unix:") :])
    host, port = bind, 8000
    if bind.startswith("["):
        host, _, rest = bind[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else port
    elif bind.count(":") == 1:
        host, _, number = bind.partition(":")
        port = int(number)
    host = _WILDCARDS.get(host, host)
    return http.client.HTTPConnection(host, port, timeout=TIMEOUT_SECONDS)


def check(bind: str) -> str | None:
    """None when GET /healthz answers 200, else why not."""
    try:
        connection = connection_for(bind)
    except ValueError:
        return f"PROVISIONER_BIND={bind!r} is not HOST:PORT or unix:PATH"
    try:
        connection.request("GET", "/healthz")
        status = connection.getresponse().status
    except OSError as error:
        return f"GET /healthz at {bind}: {error}"
    finally:
        connection.close()
    return None if status == 200 else f"GET /healthz at {bind}: {status}"


def main() -> int:
    try:
        bind = Settings.from_env().bind
    except SettingsError as error:
        print(f"unhealthy: {error}", file=sys.stderr)
        return 1
    problem = check(bind)
    if problem is not None:
        print(f"unhealthy: {problem}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
