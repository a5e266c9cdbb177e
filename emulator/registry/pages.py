"""The registry read the way AWS IoT's control plane lists it: records and keyset pages.

Things and certificates can be many (a fault-mix run leaves thousands), so their pages are read
with SQL from the last key of the previous page; what hangs off one thing or one certificate
(principals, policies) is short and returned whole.
"""

from __future__ import annotations

from typing import Any, Literal

from emulator.registry.database import Database
from emulator.registry.records import CERTIFICATE, POLICY, THING, record

# The two sides of an attachment (thing_principals): column names, never input, in the SQL text.
_Side = Literal["thing_name", "certificate_id"]


class Pages:
    """Reads the registry's database; the `Registry` holds one."""

    def __init__(self, database: Database) -> None:
        self._db = database

    # --- things -----------------------------------------------------------------------------

    def thing_record(self, thing_name: str) -> dict[str, Any] | None:
        rows = self._db.rows("SELECT * FROM things WHERE thing_name = ?", thing_name)
        return record(rows[0], THING) if rows else None

    def things_page(
        self,
        after: str | None,
        limit: int,
        *,
        attribute_name: str | None = None,
        attribute_value: str | None = None,
        prefix: bool = False,
        thing_type_name: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to `limit` things named after `after`, by name; filtered as ListThings filters."""
        where: list[str] = ["thing_name > ?"]
        params: list[object] = [after or ""]
        if thing_type_name is not None:
            where.append("thing_type_name = ?")
            params.append(thing_type_name)
        if attribute_name is not None:
            # Names are [a-zA-Z0-9_.,@/:#-]+ (checked by the caller): safe inside a quoted path.
            path = f'$."{attribute_name}"'
            if attribute_value is None:
                where.append("json_extract(attributes, ?) IS NOT NULL")
                params.append(path)
            elif prefix:
                where.append("substr(json_extract(attributes, ?), 1, ?) = ?")
                params += [path, len(attribute_value), attribute_value]
            else:
                where.append("json_extract(attributes, ?) = ?")
                params += [path, attribute_value]
        rows = self._db.rows(
            f"SELECT * FROM things WHERE {' AND '.join(where)} ORDER BY thing_name LIMIT ?", *params, limit
        )
        return [record(row, THING) for row in rows]

    def thing_principals(self, thing_name: str) -> list[tuple[str, str]]:
        """(certificate id, principal type) of every certificate attached to the thing."""
        return self._attachments("thing_name", thing_name, "certificate_id")

    def principal_things(self, certificate_id: str) -> list[tuple[str, str]]:
        """(thing name, principal type) of every thing the certificate is attached to."""
        return self._attachments("certificate_id", certificate_id, "thing_name")

    def _attachments(self, column: _Side, value: str, other: _Side) -> list[tuple[str, str]]:
        rows = self._db.rows(
            f"SELECT {other}, principal_type FROM thing_principals WHERE {column} = ? ORDER BY {other}", value
        )
        return [(row[other], row["principal_type"]) for row in rows]

    # --- certificates -----------------------------------------------------------------------

    def certificate_record(self, certificate_id: str) -> dict[str, Any] | None:
        rows = self._db.rows("SELECT * FROM certificates WHERE certificate_id = ?", certificate_id)
        return record(rows[0], CERTIFICATE) if rows else None

    def certificates_page(
        self, after: tuple[float, str] | None, limit: int, *, ascending: bool = False
    ) -> list[dict[str, Any]]:
        """Up to `limit` certificates by creation time (newest first unless `ascending`), then
        id, starting after the (creation time, id) key `after`."""
        order = "ASC" if ascending else "DESC"
        where, params = "", list[object]()
        if after is not None:
            where = f"WHERE (created_at, certificate_id) {'>' if ascending else '<'} (?, ?)"
            params = [after[0], after[1]]
        rows = self._db.rows(
            f"SELECT * FROM certificates {where} ORDER BY created_at {order}, certificate_id {order} LIMIT ?",
            *params,
            limit,
        )
        return [record(row, CERTIFICATE) for row in rows]

    def certificate_policies(self, certificate_id: str) -> list[str]:
        rows = self._db.rows(
            "SELECT policy_name FROM certificate_policies WHERE certificate_id = ? ORDER BY policy_name",
            certificate_id,
        )
        return [row["policy_name"] for row in rows]

    # --- policies ---------------------------------------------------------------------------

    def policy_record(self, policy_name: str) -> dict[str, Any] | None:
        rows = self._db.rows("SELECT * FROM policies WHERE policy_name = ?", policy_name)
        return record(rows[0], POLICY) if rows else None
