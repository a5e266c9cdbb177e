"""A pre-provisioning hook endpoint on 127.0.0.1 (AWS calls a Lambda function; the emulator, as
its templates say, an HTTP URL): it answers what the test sets and records every event it is sent."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class HookServer:
    """A hook endpoint whose answer each test sets: (status, body bytes, delay seconds)."""

    def __init__(self) -> None:
        self.status = 200
        self.body = b'{"allowProvisioning": true}'
        self.delay = 0.0
        self.headers: dict[str, str] = {}
        self.requests: list[tuple[str, str, dict]] = []  # (method, content type, event)
        self.release = threading.Event()  # ends a delay early at teardown
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                event = json.loads(self.rfile.read(length))
                hook.requests.append(("POST", self.headers.get("Content-Type", ""), event))
                if hook.delay:
                    hook.release.wait(hook.delay)
                try:
                    self.send_response(hook.status)
                    for name, value in hook.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(hook.body)))
                    self.end_headers()
                    self.wfile.write(hook.body)
                except OSError:
                    pass  # the client gave up (timeout test): nothing left to answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def answer(self, status: int, payload: object) -> None:
        self.status = status
        self.body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()

    @property
    def events(self) -> list[dict[str, Any]]:
        """The events the hook was sent, oldest first."""
        return [event for _, _, event in self.requests]

    def __enter__(self) -> HookServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)
