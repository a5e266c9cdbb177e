"""The admin API (admin keys only): API keys, enrollments and the audit trail.

POST   /admin/keys                       issue a key (its secret is in this answer only)
GET    /admin/keys                       every key with its usage
GET    /admin/keys/<keyId>               one key
DELETE /admin/keys/<keyId>               revoke it
POST   /admin/enrollments                add or change one enrollment
POST   /admin/enrollments/import         CSV (text/csv), all lines or none
GET    /admin/enrollments                page through enrollments
GET    /admin/registrations              page through the audit trail, newest first
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Response, request

from service.callers import enrollment_csv, keys
from service.callers.model import KeySpec, Scope
from service.callers.views import enrollment_view, key_view, registration_view
from service.errors import InvalidInput, UnsupportedMediaType
from service.http import admin_schemas, auth, checked, context
from service.http.body import read_body
from service.http.responses import json_response
from service.store import KeyRecord, RegistrationFilter, Store, null

blueprint = auth.admin_blueprint("admin", __name__, url_prefix="/admin")


def _store() -> Store:
    return context.kept_store(null.OFF)


_KEY_ID = re.compile(r"k[0-9a-f]{12}")


def _key(store: Store, key_id: str) -> KeyRecord:
    return checked.issued(store.keys.get, key_id, _KEY_ID, field="keyId", what="API key")


@blueprint.post("/keys")
def create_key() -> Response:
    data = checked.body(admin_schemas.KeyCreateSchema)
    templates = tuple(data["templates"]) if data["templates"] is not None else None
    spec = checked.into(KeySpec, data, scope=checked.into(Scope, data, templates=templates))
    now = datetime.now(UTC)
    record, token = keys.issue(_store(), spec, now)
    return json_response({"apiKey": token, "key": key_view(record, now)}, 201)


@blueprint.get("/keys")
def list_keys() -> Response:
    now = datetime.now(UTC)
    return json_response({"items": [key_view(r, now) for r in _store().keys.list()]}, 200)


@blueprint.get("/keys/<key_id>")
def get_key(key_id: str) -> Response:
    return json_response(key_view(_key(_store(), key_id), datetime.now(UTC)), 200)


@blueprint.delete("/keys/<key_id>")
def revoke_key(key_id: str) -> Response:
    store, now = _store(), datetime.now(UTC)
    _key(store, key_id)
    store.keys.revoke(key_id, now)
    keys.forget(key_id)  # this worker at once; the others within keys.CACHE_SECONDS
    record = store.keys.get(key_id)
    assert record is not None
    return json_response(key_view(record, now), 200)


@blueprint.post("/enrollments")
def put_enrollment() -> Response:
    data = checked.body(admin_schemas.EnrollmentSchema)
    entry = enrollment_csv.entry(
        data["template"], data["parameter"], data["value"], data["enabled"], data["reprovision"]
    )
    store = _store()
    added, _ = store.enrollments.upsert_all([entry], datetime.now(UTC))
    record = store.enrollments.get(entry.template, entry.parameter, entry.value)
    assert record is not None
    return json_response(enrollment_view(record), 201 if added else 200)


@blueprint.post("/enrollments/import")
def import_enrollments() -> Response:
    query = checked.query(admin_schemas.ImportQuerySchema)
    if request.mimetype not in ("text/csv", "text/plain"):
        raise UnsupportedMediaType(f"Send the CSV as text/csv, got {request.mimetype or 'no Content-Type'}.")
    raw = read_body(enrollment_csv.MAX_BYTES)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise InvalidInput(f"the CSV is not UTF-8 (byte {error.start})", status=422) from None
    entries = enrollment_csv.parse(text, template=query["template"], parameter=query["parameter"])
    added, updated = _store().enrollments.upsert_all(entries, datetime.now(UTC))
    return json_response({"added": added, "updated": updated}, 200)


@blueprint.get("/enrollments")
def list_enrollments() -> Response:
    query = checked.query(admin_schemas.EnrollmentQuerySchema)
    records = _store().enrollments.page(query["template"], query["after"], query["limit"])
    following = records[-1].id if len(records) == query["limit"] else None
    return json_response({"items": [enrollment_view(r) for r in records], "next": following}, 200)


@blueprint.get("/registrations")
def list_registrations() -> Response:
    query = checked.query(admin_schemas.RegistrationQuerySchema)
    where = checked.into(RegistrationFilter, query)
    records = _store().registrations.page(where, query["before"], query["limit"])
    following = records[-1].id if len(records) == query["limit"] else None
    return json_response({"items": [registration_view(r) for r in records], "next": following}, 200)
