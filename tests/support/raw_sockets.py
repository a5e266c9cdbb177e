"""Raw TCP sockets for what a well-behaved MQTT client library will not send; each one opened or kept
here is closed after the test (the autouse fixture in tests/emulator/conftest.py)."""

from __future__ import annotations

import socket

_open: list[socket.socket] = []


def keep(sock: socket.socket) -> socket.socket:
    """`sock`, to be closed after the test."""
    _open.append(sock)
    return sock


def open_socket(port: int, timeout: float = 5) -> socket.socket:
    """A connected TCP socket to 127.0.0.1:`port`, closed after the test."""
    return keep(socket.create_connection(("127.0.0.1", port), timeout=timeout))


def close_all() -> None:
    while _open:
        _open.pop().close()
