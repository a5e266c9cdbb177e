"""The registry's read-only views: things, certificates, policies and template uses as dicts."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from emulator.registry.database import Database


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
            **_certificate_summary(rows[0]),
            "certificatePem": rows[0]["certificate_pem"],
            "thingNames": [r["thing_name"] for r in things],
            "policyNames": [r["policy_name"] for r in policies],
        }

    def list_certificates(self) -> list[dict[str, Any]]:
        rows = self._db.rows("SELECT * FROM certificates ORDER BY created_at, certificate_id")
        return [_certificate_summary(row) for row in rows]

    def list_policies(self) -> list[dict[str, Any]]:
        rows = self._db.rows("SELECT * FROM policies ORDER BY policy_name")
        return [
            {
                "policyName": r["policy_name"],
                "policyDocument": r["policy_document"],
                "createdAt": r["created_at"],
            }
            for r in rows
        ]

    def list_template_uses(self) -> list[dict[str, Any]]:
        rows = self._db.rows("SELECT * FROM template_uses ORDER BY id")
        return [
            {
                "templateName": r["template_name"],
                "certificateId": r["certificate_id"],
                "thingName": r["thing_name"],
                "usedAt": r["used_at"],
            }
            for r in rows
        ]


def _certificate_summary(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "certificateId": row["certificate_id"],
        "status": row["status"],
        "owner": row["owner"],
        "createdAt": row["created_at"],
    }
