"""The admin API for device CAs, the enrollment groups of devices that prove who they are (admin
keys only; docs/attestation.md, the operations in openapi.yaml).

POST   /admin/device-cas                          register a manufacturer CA for a template
GET    /admin/device-cas                          every registered CA (?template=)
GET    /admin/device-cas/<caId>                   one, with its block list and CRL
PATCH  /admin/device-cas/<caId>                   change its name, parameters, policy, state, limits
DELETE /admin/device-cas/<caId>                   remove it (its block list and CRL too)
POST   /admin/device-cas/<caId>/blocks            block a device by serial or fingerprint
DELETE /admin/device-cas/<caId>/blocks?kind=&value=   unblock it
PUT    /admin/device-cas/<caId>/crl               load (or replace) the manufacturer's CRL
DELETE /admin/device-cas/<caId>/crl               drop it

A change reaches every worker within 2 s (service.callers.devices.trust refreshes by revision).
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Any

from flask import Response

from service.callers.devices import DeviceCaSpec, groups
from service.callers.devices.certificates import MAX_CRL_REQUEST_BYTES
from service.callers.views import block_view, crl_view, device_ca_view
from service.errors import InvalidInput, NotFound
from service.http import admin_schemas, auth, checked, context
from service.http.responses import json_response
from service.store import Store, null
from service.store.device_cas import DeviceCaRecord

blueprint = auth.admin_blueprint("admin_device_cas", __name__, url_prefix="/admin/device-cas")

# Issued ids all look like this: anything else is looked up nowhere.
CA_ID = re.compile(r"c[0-9a-f]{12}")


def _store() -> Store:
    return context.kept_store(null.unavailable("device CAs are"))


def _ca(store: Store, ca_id: str) -> DeviceCaRecord:
    return checked.issued(store.device_cas.get, ca_id, CA_ID, field="caId", what="device CA")


def _full_view(store: Store, record: DeviceCaRecord) -> dict[str, Any]:
    crl = store.device_cas.crl(record.ca_id)
    return {
        **device_ca_view(record),
        "blocks": [block_view(b) for b in store.device_cas.blocks(record.ca_id)],
        "crl": crl_view(crl) if crl is not None else None,
    }


@blueprint.post("")
def register() -> Response:
    data = checked.body(admin_schemas.DeviceCaCreateSchema)
    spec = checked.into(DeviceCaSpec, data)
    store = _store()
    record = groups.register(store.device_cas, spec, datetime.now(UTC))
    return json_response(_full_view(store, record), 201)


@blueprint.get("")
def list_() -> Response:
    query = checked.query(admin_schemas.DeviceCaQuerySchema)
    records = _store().device_cas.list(query["template"])
    return json_response({"items": [device_ca_view(r) for r in records]}, 200)


@blueprint.get("/<ca_id>")
def get(ca_id: str) -> Response:
    store = _store()
    return json_response(_full_view(store, _ca(store, ca_id)), 200)


@blueprint.patch("/<ca_id>")
def change(ca_id: str) -> Response:
    data = checked.body(admin_schemas.DeviceCaChangeSchema)
    store = _store()
    _ca(store, ca_id)
    if not groups.change(store.device_cas, ca_id, data, datetime.now(UTC)):
        raise NotFound(f"no device CA with id {ca_id!r}")
    return json_response(_full_view(store, _ca(store, ca_id)), 200)


@blueprint.delete("/<ca_id>")
def delete(ca_id: str) -> Response:
    store = _store()
    record = _ca(store, ca_id)
    if not store.device_cas.delete(ca_id):
        raise NotFound(f"no device CA with id {ca_id!r}")
    return json_response(device_ca_view(record), 200)


@blueprint.post("/<ca_id>/blocks")
def block(ca_id: str) -> Response:
    data = checked.body(admin_schemas.BlockSchema)
    store, kind, value = _named_block(ca_id, data)
    try:
        added = groups.block(store.device_cas, ca_id, kind, value, datetime.now(UTC), data["reason"])
    except LookupError:
        raise NotFound(f"no device CA with id {ca_id!r}") from None
    found = next(b for b in store.device_cas.blocks(ca_id) if (b.kind, b.value) == (kind, value))
    return json_response(block_view(found), 201 if added else 200)


@blueprint.delete("/<ca_id>/blocks")
def unblock(ca_id: str) -> Response:
    store, kind, value = _named_block(ca_id, checked.query(admin_schemas.BlockQuerySchema))
    if not store.device_cas.unblock(ca_id, kind, value, datetime.now(UTC)):
        raise NotFound(f"device CA {ca_id} has no block of {kind} {value!r}")
    return json_response({"kind": kind, "value": value, "blocked": False}, 200)


def _named_block(ca_id: str, given: dict[str, Any]) -> tuple[Store, str, str]:
    """The store and the block `given` names, its value in its one spelling, of a CA that exists."""
    store = _store()
    _ca(store, ca_id)
    kind, value = groups.normalized_block(given["kind"], given["value"])
    return store, kind, value


@blueprint.put("/<ca_id>/crl")
def put_crl(ca_id: str) -> Response:
    data = checked.body(admin_schemas.CrlSchema, MAX_CRL_REQUEST_BYTES)
    store = _store()
    _ca(store, ca_id)
    try:
        stored = groups.put_crl(store.device_cas, ca_id, _crl_bytes(data["crl"]), datetime.now(UTC))
    except LookupError:
        raise NotFound(f"no device CA with id {ca_id!r}") from None
    return json_response(crl_view(stored), 200)


@blueprint.delete("/<ca_id>/crl")
def drop_crl(ca_id: str) -> Response:
    store = _store()
    _ca(store, ca_id)
    if not store.device_cas.drop_crl(ca_id, datetime.now(UTC)):
        raise NotFound(f"device CA {ca_id} has no CRL")
    return json_response({"caId": ca_id, "crl": None}, 200)


def _crl_bytes(text: str) -> bytes:
    """PEM as it is; anything else is the DER in base64."""
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode("utf-8", "surrogateescape")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        why = "neither a PEM CRL (-----BEGIN X509 CRL-----) nor a DER CRL in base64"
        raise InvalidInput(f"crl: {why}", errors={"crl": [why]}, status=422) from None
