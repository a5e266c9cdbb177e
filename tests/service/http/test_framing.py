"""Bodies the server cannot frame (malformed chunked encoding, a lying Content-Length): 400 as a
problem, no traceback in the log, and the connection closed, under gunicorn and the dev server."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from served import API_KEY, emulator_env, free_port, start_gunicorn, stop, wait_ready

from emulator import Emulator

BODY = b'{"templateName": "demo", "parameters": {"SerialNumber": "SN-1"}}'
HEAD = (
    "POST /provision HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
    f"Authorization: Bearer {API_KEY}\r\n"
)

# name -> (extra headers, body bytes, whether the client half-closes after sending)
MALFORMED: dict[str, tuple[str, bytes, bool]] = {
    "chunk size not hex": ("Transfer-Encoding: chunked\r\n", b"zz\r\n" + BODY + b"\r\n0\r\n\r\n", False),
    "chunk longer than declared": (
        "Transfer-Encoding: chunked\r\n",
        b"%x\r\n" % (len(BODY) - 10) + BODY + b"\r\n0\r\n\r\n",
        False,
    ),
    "content-length above the body, then close": (f"Content-Length: {len(BODY) + 40}\r\n", BODY, True),
    "content-length below the body": (
        f"Content-Length: {len(BODY) - 20}\r\n",
        BODY + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        False,
    ),
}


def exchange(port: int, head: str, body: bytes, half_close: bool) -> bytes:
    """Send one raw request; return everything the server sends until it closes (or 10 s)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head.encode() + b"\r\n" + body)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        received = b""
        while chunk := sock.recv(65536):  # a server that keeps the connection open times this out
            received += chunk
    return received


def parse(received: bytes) -> tuple[int, dict[str, str], dict[str, object], bytes]:
    """(status, headers, JSON body, what follows the first response)."""
    head, _, rest = received.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while True:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                break
    else:
        length = int(headers["content-length"])
        body, rest = rest[:length], rest[length:]
    return int(lines[0].split()[1]), headers, json.loads(body), rest


@pytest.fixture(scope="module")
def gunicorn(
    shared_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[int, Path]]:
    log = tmp_path_factory.mktemp("gunicorn") / "stderr.log"
    port = free_port()
    env = emulator_env(shared_emulator, PROVISIONER_BIND=f"127.0.0.1:{port}", PROVISIONER_WORKERS="1")
    process = start_gunicorn(env, log)
    try:
        wait_ready(f"http://127.0.0.1:{port}", process)
        yield port, log
    finally:
        stop(process)


def check_refused(received: bytes) -> None:
    status, headers, body, rest = parse(received)
    assert status == 400, received
    assert headers["content-type"] == "application/problem+json"
    assert headers["connection"] == "close"
    assert body["status"] == 400 and body["type"].endswith("invalid-input")
    assert rest == b"", f"the server answered what followed the broken body: {rest!r}"


@pytest.mark.parametrize("case", list(MALFORMED))
def test_gunicorn_answers_an_unframable_body_400_and_closes(gunicorn: tuple[int, Path], case: str) -> None:
    port, log = gunicorn
    extra, body, half_close = MALFORMED[case]
    logged_before = log.read_text()
    check_refused(exchange(port, HEAD + extra, body, half_close))
    logged = log.read_text()[len(logged_before) :]
    assert "Traceback" not in logged and "unexpected error" not in logged, logged


def test_gunicorn_still_serves_a_well_framed_chunked_body(gunicorn: tuple[int, Path]) -> None:
    port, _ = gunicorn
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(BODY), BODY)
    received = exchange(
        port, HEAD + "Transfer-Encoding: chunked\r\nConnection: close\r\n", chunked, half_close=False
    )
    status, _, body, _ = parse(received)
    assert status == 201, body


@pytest.mark.parametrize("case", list(MALFORMED))
def test_dev_server_answers_an_unframable_body_400_and_closes(
    api_on_emulator: Callable[[], int], caplog: pytest.LogCaptureFixture, case: str
) -> None:
    port = api_on_emulator()
    extra, body, half_close = MALFORMED[case]
    check_refused(exchange(port, HEAD + extra, body, half_close))
    assert "Traceback" not in caplog.text and "unexpected error" not in caplog.text


@pytest.fixture
def api_on_emulator(serve, unreachable_settings) -> Callable[[], int]:
    def start() -> int:
        api = serve(unreachable_settings(PROVISIONER_API_KEYS=API_KEY))
        return int(api.base_url.rsplit(":", 1)[1])

    return start
