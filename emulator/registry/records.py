"""The registry's rows as records: a table's columns under AWS IoT's camelCase names.

One mapping per shape of record, read by `pages` (the control plane's records) and `views` (the
summaries of `python -m emulator list` and of tests). A thing's attributes are stored as JSON
text and read back as an object.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from typing import Any

# Record key -> column.
THING = {
    "thingName": "thing_name",
    "thingId": "thing_id",
    "thingTypeName": "thing_type_name",
    "attributes": "attributes",
    "billingGroupName": "billing_group",
    "version": "version",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
}
CERTIFICATE = {
    "certificateId": "certificate_id",
    "certificatePem": "certificate_pem",
    "status": "status",
    "owner": "owner",
    "createdAt": "created_at",
    "updatedAt": "updated_at",
    "customerVersion": "customer_version",
}
CERTIFICATE_SUMMARY = {key: CERTIFICATE[key] for key in ("certificateId", "status", "owner", "createdAt")}
POLICY = {"policyName": "policy_name", "policyDocument": "policy_document", "createdAt": "created_at"}
TEMPLATE_USE = {
    "templateName": "template_name",
    "certificateId": "certificate_id",
    "thingName": "thing_name",
    "usedAt": "used_at",
}
_JSON_COLUMNS = frozenset({"attributes"})


def record(row: sqlite3.Row, fields: Mapping[str, str]) -> dict[str, Any]:
    """The record of `row` with the keys of `fields`, in their order."""
    return {key: _value(row, column) for key, column in fields.items()}


def _value(row: sqlite3.Row, column: str) -> Any:
    return json.loads(row[column]) if column in _JSON_COLUMNS else row[column]
