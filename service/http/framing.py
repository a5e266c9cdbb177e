"""A request body that cannot be framed: answered 400, then the connection is closed.

A chunk size that is not hex, a chunk longer than it declared, or a body shorter than its
Content-Length leaves the connection at an unknown byte: what follows cannot be trusted to start
the next request. `body.read_json_object` answers such a body with 400 and `Connection: close`.

Under gunicorn two things need help, and `for_gunicorn` (installed by `gunicorn_conf`) gives it:
gunicorn's body reader raises its own parse errors, which are not the `OSError` WSGI servers
raise for a broken stream (werkzeug's dev server does), so they would reach the app as a bug
(500 with a traceback); and gunicorn drops the `Connection` header an app sets, so it would keep
the connection open and parse the rest of the broken body as the next request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class UnreadableBody(OSError):
    """The server could not read the request body as framed (chunked or Content-Length)."""


def for_gunicorn(app: WSGIApp) -> ForGunicorn:
    """`app` with gunicorn's body errors turned into UnreadableBody and `Connection: close` kept."""
    return ForGunicorn(app)


class ForGunicorn:
    """The wrapped app; its other attributes (a Flask app's `extensions`) are the app's."""

    def __init__(self, app: WSGIApp) -> None:
        from gunicorn.http.errors import ParseException

        self.app = app
        self._parse_error = ParseException

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ["wsgi.input"] = _Input(environ["wsgi.input"], self._parse_error)

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            if any(name.lower() == "connection" and value.lower() == "close" for name, value in headers):
                # start_response is a bound method of gunicorn's Response; force_close its API.
                force_close = getattr(getattr(start_response, "__self__", None), "force_close", None)
                if force_close is not None:
                    force_close()
            return start_response(status, headers, exc_info)

        return self.app(environ, start)


class _Input:
    """gunicorn's wsgi.input, raising UnreadableBody where gunicorn raises a parse error."""

    def __init__(self, body: Any, parse_error: type[Exception]) -> None:
        self._body = body
        self._errors = (parse_error, OSError)

    def _call(self, method: Callable[..., Any], *args: Any) -> Any:
        try:
            return method(*args)
        except self._errors as error:
            # The name only: the message may quote the caller's bytes.
            raise UnreadableBody(type(error).__name__) from None

    def read(self, size: int | None = None) -> bytes:
        data: bytes = self._call(self._body.read, size)
        return data

    def readline(self, size: int | None = None) -> bytes:
        data: bytes = self._call(self._body.readline, size)
        return data

    def readlines(self, hint: int | None = None) -> list[bytes]:
        data: list[bytes] = self._call(self._body.readlines, hint)
        return data

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line
