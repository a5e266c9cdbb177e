"""The registry's read-only views: things, certificates, policies and template uses as dicts."""

from __future__ import annotations

import json
from typing import Any

from emulator.registry.database import Database
from emulator.registry.records import CERTIFICATE_SUMMARY, POLICY, TEMPLATE_USE, record


class Views:
    """Reads the registry's database; the `Registry` holds one."""

    def __init__(self, database: Database) -> None:
        self._db = database

    def describe_thing(self, name: str) -> dict[str, Any] | None:
        with self._db.lock:
            rows = self._db.rows("SELECT * FROM things WHERE thing_name = ?", name)
            if not rows:
                return None
            row = rows[0]
            groups = self._db.rows(
                "SELECT group_name FROM thing_groups WHERE thing_name = ? ORDER BY group_name", name
            )
            principals = self._db.rows(
                "SELECT certificate_id FROM thing_principals WHERE thing_name = ? ORDER BY certificate_id",
                name,
            )
        return {
            "thingName": row["thing_name"],
            "attributes": json.loads(row["attributes"]),
            "thingTypeName": row["thing_type_name"],
            "thingGroups": [r["group_name"] for r in groups],
            "billingGroup": row["billing_group"],
            "principals": [r["certificate_id"] for r in principals],
        }

    def list_things(self) -> list[dict[str, Any]]:
        with self._db.lock:
            names = [
                r["thing_name"] for r in self._db.rows("SELECT thing_name FROM things ORDER BY thing_name")
            ]
            return [thing for name in names if (thing := self.describe_thing(name))]

    def describe_certificate(self, certificate_id: str) -> dict[str, Any] | None:
        with self._db.lock:
            rows = self._db.rows("SELECT * FROM certificates WHERE certificate_id = ?", certificate_id)
            if not rows:
                return None
            things = self._db.rows(
                "SELECT thing_name FROM thing_principals WHERE certificate_id = ? ORDER BY thing_name",
                certificate_id,
            )
            policies = self._db.rows(
                "SELECT policy_name FROM certificate_policies WHERE certificate_id = ? ORDER BY policy_name",
                certificate_id,
            )
        return {
            **record(rows[0], CERTIFICATE_SUMMARY),
            "certificatePem": rows[0]["certificate_pem"],
            "thingNames": [r["thing_name"] for r in things],
            "policyNames": [r["policy_name"] for r in policies],
        }

    def list_certificates(self) -> list[dict[str, Any]]:
        rows = self._db.rows("SELECT * FROM certificates ORDER BY created_at, certificate_id")
        return [record(row, CERTIFICATE_SUMMARY) for row in rows]

    def list_policies(self) -> list[dict[str, Any]]:
        rows = self._db.rows("SELECT * FROM policies ORDER BY policy_name")
        return [record(row, POLICY) for row in rows]

    def list_template_uses(self) -> list[dict[str, Any]]:
        rows = self._db.rows("SELECT * FROM template_uses ORDER BY id")
        return [record(row, TEMPLATE_USE) for row in rows]
