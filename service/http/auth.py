"""The caller of this request: `Authorization: Bearer <key>` resolved once, kept on `g`.

Keys are issued by the service (`service.callers.keys`) or come from PROVISIONER_API_KEYS
(bootstrap admin keys). Messages never repeat what the caller sent, nor say which keys exist.
"""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, g, request

from service import logs
from service.callers import keys
from service.callers.model import Caller
from service.errors import Forbidden, ServiceError, Unauthorized
from service.http import context


def caller() -> Caller:
    """The authenticated caller, or Unauthorized."""
    if "caller" not in g:
        g.caller = keys.authenticate(
            request.headers.get("Authorization"),
            context.settings().api_keys,
            context.store(),
            datetime.now(UTC),
        )
        logs.bind(key_id=g.caller.key_id)
    found: Caller = g.caller
    return found


def admin() -> Caller:
    """The authenticated caller if it holds the admin role, else 401/403."""
    found = caller()
    if not found.is_admin:
        raise Forbidden(
            f"API key {found.key_id} has the role '{found.role}'; this needs 'admin'", rule="admin-only"
        )
    return found


def admin_blueprint(name: str, import_name: str, url_prefix: str) -> Blueprint:
    """A blueprint whose every view is for admin keys only (401/403 before the view runs)."""
    blueprint = Blueprint(name, import_name, url_prefix=url_prefix)

    @blueprint.before_request
    def _admins_only() -> None:
        admin()

    return blueprint


def is_admin() -> bool:
    """Whether this request carries a valid admin key (no error either way)."""
    try:
        return admin().is_admin
    except ServiceError:
        return False


__all__ = ["Unauthorized", "admin", "caller", "is_admin"]
