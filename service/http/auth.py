"""API keys: `Authorization: Bearer <key>` checked against every configured key in constant time."""

from __future__ import annotations

import hmac
from collections.abc import Sequence

from service.errors import Unauthorized


def authenticate(authorization: str | None, api_keys: Sequence[str]) -> None:
    """Return if `authorization` carries one of `api_keys`, else raise Unauthorized.

    Every key is compared, with no early exit, so the time taken does not tell which key (or how
    much of one) matched. Messages never repeat what the caller sent.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Send the API key as 'Authorization: Bearer <key>'.")
    presented = token.encode("utf-8", "surrogateescape")
    matched = False
    for key in api_keys:
        matched |= hmac.compare_digest(presented, key.encode("utf-8"))
    if not matched:
        raise Unauthorized("The API key is not valid.")
