"""Who is calling the EST door with an API key: HTTP Basic (RFC 7030 3.2.3) or Bearer. (A device
that presents its certificate over mutual TLS is a device caller: service.callers.presented.)

A factory tool (or libest's `-u USER -h KEY`) sends `Authorization: Basic base64(user:key)`: the
password is an API key the service issued, or a bootstrap key; the user name is free (it is not
checked and never logged). `Authorization: Bearer <key>` works as on the JSON door. The key is
then checked as the JSON door checks it (service.callers.keys): unknown, revoked and expired keys
answer the same 401. A 401 names both schemes in WWW-Authenticate, Basic first, because libest
sends credentials only after a 401 that names a scheme it was given credentials for.
"""

from __future__ import annotations

import base64
import binascii
from datetime import UTC, datetime

from flask import current_app, request

from service import logs
from service.callers import keys
from service.callers.model import Caller
from service.config import Settings
from service.errors import Unauthorized
from service.process import PerProcess
from service.store import Store

NO_CREDENTIALS = (
    "This EST server needs a device certificate over mutual TLS, or an API key: HTTP Basic with "
    "the key as the password (any user name), or 'Authorization: Bearer <key>'."
)


def caller() -> Caller:
    """The caller behind the request's API key, or Unauthorized."""
    scheme, _, credentials = (request.headers.get("Authorization") or "").strip().partition(" ")
    scheme = scheme.lower()
    if scheme == "basic":
        key = _basic_password(credentials.strip())
    elif scheme == "bearer":
        key = credentials.strip()
    else:
        raise Unauthorized(NO_CREDENTIALS)
    if not key:
        raise Unauthorized(NO_CREDENTIALS)
    settings: Settings = current_app.extensions["settings"]
    found = keys.authenticate(f"Bearer {key}", settings.api_keys, store(), datetime.now(UTC))
    logs.bind(key_id=found.key_id)
    return found


def store() -> Store:
    """This worker's store (the null store when the service keeps none)."""
    holder: PerProcess[Store] = current_app.extensions["store"]
    return holder.get()


def _basic_password(credentials: str) -> str:
    try:
        decoded = base64.b64decode(credentials, validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise Unauthorized("The Basic credentials are not base64 of 'user:password' in UTF-8.") from None
    _user, colon, password = decoded.partition(":")
    if not colon:
        raise Unauthorized("The Basic credentials are not 'user:password'.")
    return password
