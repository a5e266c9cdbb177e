"""Whose address a request is: the one hop nginx forwards, for requests that came through nginx.

With PROVISIONER_BEHIND_PROXY every request did (create_app wraps the whole app in ProxyFix). In
`make run`, gunicorn serves plain HTTP itself and its TLS front (nginx) reaches it on
PROVISIONER_PROXY_SOCKET: only requests on that socket take X-Forwarded-For, as only they may
carry a client certificate (service.callers.presented); anyone else's X-Forwarded-For is ignored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from werkzeug.middleware.proxy_fix import ProxyFix

from service.callers.presented import from_proxy
from service.config import Settings

WsgiApp = Any


def one_hop(app: WsgiApp) -> ProxyFix:
    """The caller's address is the one nginx put in X-Forwarded-For (its peer), never one a
    client sent (nginx replaces theirs)."""
    return ProxyFix(app, x_for=1, x_proto=0, x_host=0, x_port=0, x_prefix=0)


class FromTlsFront:
    """ProxyFix for the requests that came through the TLS front's socket, nothing for others."""

    def __init__(self, app: WsgiApp, settings: Settings) -> None:
        self._app = app
        self._proxied = one_hop(app)
        self._settings = settings

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        if from_proxy(environ, self._settings):
            return self._proxied(environ, start_response)
        return self._app(environ, start_response)  # type: ignore[no-any-return]
