"""AWS IoT's rules for changing what exists: certificate status, deletion, attachments.

What each method copies is AWS IoT's API reference for the operation of the same name
(https://docs.aws.amazon.com/iot/latest/apireference/), with the messages AWS was seen to send
where one is known (the field: tools that print AWS's answers); the emulator's own where not.

- UpdateCertificate: ACTIVE, INACTIVE and REVOKED may be set, any number of times (the operation
  is idempotent); PENDING_TRANSFER and PENDING_ACTIVATION "will result in an exception being
  thrown", REGISTER_INACTIVE is deprecated (refused here too, as InvalidRequestException: which
  error AWS sends is unconfirmed). A REVOKED certificate stays REVOKED: AWS documents revoking as
  final; the error for trying to leave it (CertificateStateException here) is unconfirmed.
- DeleteCertificate: "cannot be deleted if it has a policy or IoT thing attached to it or if its
  status is set to ACTIVE"; `forceDelete` "forces the deletion of a certificate if it is inactive
  and is not attached to an IoT thing", i.e. it lifts the policy condition only.
- DeleteThing: succeeds for a thing that does not exist; refused while a principal is attached
  (field: `InvalidRequestException: Cannot delete. Thing <name> is still attached to one or more
  principals`).
- AttachThingPrincipal with EXCLUSIVE_THING: the thing is the only one the principal may be
  attached to.

Every method is one transaction; listeners hear of a status change or deletion after the commit.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

from emulator.errors import (
    CertificateState,
    DeleteConflict,
    InvalidControlRequest,
    ResourceNotFound,
    VersionConflict,
)
from emulator.registry.database import Database

SETTABLE_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED")
# In botocore's model of CertificateStatus, but not for developers to set (UpdateCertificate's
# newStatus documentation).
UNSETTABLE_STATUSES = ("PENDING_TRANSFER", "PENDING_ACTIVATION", "REGISTER_INACTIVE")
PRINCIPAL_TYPES = ("EXCLUSIVE_THING", "NON_EXCLUSIVE_THING")


class Lifecycle:
    """AWS's rules over the registry's database; the `Registry` holds one and hears of changes
    through `changed` (called with the certificate ids after the commit)."""

    def __init__(self, database: Database, clock: Callable[[], float], changed: Callable[..., None]) -> None:
        self._db = database
        self._clock = clock
        self._changed = changed

    # --- certificates -------------------------------------------------------------------------

    def update_certificate(self, certificate_id: str, new_status: str) -> str:
        """UpdateCertificate; return the status the certificate had."""
        if new_status in UNSETTABLE_STATUSES:
            raise InvalidControlRequest(
                f"newStatus {new_status} cannot be set; UpdateCertificate takes "
                f"{', '.join(SETTABLE_STATUSES)}"
            )
        if new_status not in SETTABLE_STATUSES:
            raise InvalidControlRequest(
                f"newStatus {new_status!r} is not a certificate status; UpdateCertificate takes "
                f"{', '.join(SETTABLE_STATUSES)}"
            )
        with self._db.transaction() as db:
            old = _certificate_status(db, certificate_id)
            if old == new_status:
                return old
            if old == "REVOKED":
                raise CertificateState(
                    f"Certificate {certificate_id} is REVOKED; a revoked certificate cannot change status."
                )
            db.execute(
                "UPDATE certificates SET status = ?, updated_at = ?,"
                " customer_version = customer_version + 1 WHERE certificate_id = ?",
                (new_status, self._clock(), certificate_id),
            )
        self._changed(certificate_id)
        return old

    def delete_certificate(self, certificate_id: str, *, force_delete: bool = False) -> None:
        """DeleteCertificate: not while ACTIVE or attached to a thing; policies block it unless
        `force_delete` (then they are detached with it)."""
        with self._db.transaction() as db:
            status = _certificate_status(db, certificate_id)
            if status == "ACTIVE":
                raise CertificateState(
                    f"Certificate must be deactivated (not ACTIVE) before deletion. Id: {certificate_id}"
                )
            things = _column(
                db, "SELECT thing_name FROM thing_principals WHERE certificate_id = ?", certificate_id
            )
            if things:
                raise DeleteConflict(
                    f"Things must be detached before deletion: certificate {certificate_id} is attached "
                    f"to {_names(things)}"
                )
            policies = _column(
                db, "SELECT policy_name FROM certificate_policies WHERE certificate_id = ?", certificate_id
            )
            if policies and not force_delete:
                raise DeleteConflict(
                    f"Certificate policies must be detached before deletion: certificate {certificate_id} "
                    f"has {_names(policies)} (or set forceDelete)"
                )
            db.execute("DELETE FROM certificates WHERE certificate_id = ?", (certificate_id,))
        self._changed(certificate_id)

    # --- things and their principals -----------------------------------------------------------

    def attach_thing_principal(
        self, thing_name: str, certificate_id: str, principal_type: str = "NON_EXCLUSIVE_THING"
    ) -> None:
        if principal_type not in PRINCIPAL_TYPES:
            raise InvalidControlRequest(
                f"thingPrincipalType {principal_type!r} is not one of {', '.join(PRINCIPAL_TYPES)}"
            )
        with self._db.transaction() as db:
            _require_thing(db, thing_name)
            _certificate_status(db, certificate_id)
            others = db.execute(
                "SELECT thing_name, principal_type FROM thing_principals"
                " WHERE certificate_id = ? AND thing_name != ?",
                (certificate_id, thing_name),
            ).fetchall()
            exclusive = [row["thing_name"] for row in others if row["principal_type"] == "EXCLUSIVE_THING"]
            if exclusive:
                raise InvalidControlRequest(
                    f"certificate {certificate_id} is attached exclusively to thing {exclusive[0]}"
                )
            if others and principal_type == "EXCLUSIVE_THING":
                raise InvalidControlRequest(
                    f"certificate {certificate_id} cannot be attached exclusively: it is attached to "
                    f"{_names([row['thing_name'] for row in others])}"
                )
            db.execute(
                "INSERT INTO thing_principals (thing_name, certificate_id, principal_type)"
                " VALUES (?, ?, ?) ON CONFLICT (thing_name, certificate_id)"
                " DO UPDATE SET principal_type = excluded.principal_type",
                (thing_name, certificate_id, principal_type),
            )

    def detach_thing_principal(self, thing_name: str, certificate_id: str) -> None:
        """DetachThingPrincipal; detaching what is not attached succeeds. AWS propagates a
        detachment within seconds; the emulator at once."""
        with self._db.transaction() as db:
            _require_thing(db, thing_name)
            _certificate_status(db, certificate_id)
            db.execute(
                "DELETE FROM thing_principals WHERE thing_name = ? AND certificate_id = ?",
                (thing_name, certificate_id),
            )

    def delete_thing(self, thing_name: str, expected_version: int | None = None) -> bool:
        """DeleteThing; return whether there was one to delete (AWS answers alike either way)."""
        with self._db.transaction() as db:
            row = db.execute("SELECT version FROM things WHERE thing_name = ?", (thing_name,)).fetchone()
            if row is None:
                return False
            if expected_version is not None and expected_version != row["version"]:
                raise VersionConflict(
                    f"The version for thing {thing_name} does not match the expected version "
                    f"(expected {expected_version}, current {row['version']})."
                )
            if db.execute("SELECT 1 FROM thing_principals WHERE thing_name = ?", (thing_name,)).fetchone():
                raise InvalidControlRequest(
                    f"Cannot delete. Thing {thing_name} is still attached to one or more principals"
                )
            db.execute("DELETE FROM things WHERE thing_name = ?", (thing_name,))
        return True

    # --- policies ---------------------------------------------------------------------------------

    def attach_policy(self, policy_name: str, certificate_id: str) -> None:
        with self._db.transaction() as db:
            if not db.execute("SELECT 1 FROM policies WHERE policy_name = ?", (policy_name,)).fetchone():
                raise ResourceNotFound(f"Policy {policy_name} does not exist")
            _certificate_status(db, certificate_id)
            db.execute(
                "INSERT OR IGNORE INTO certificate_policies VALUES (?, ?)", (certificate_id, policy_name)
            )

    def detach_policy(self, policy_name: str, certificate_id: str) -> bool:
        """DetachPolicy; return whether it was attached (detaching what is not is no error:
        DetachPolicy has no ResourceNotFoundException in AWS's model)."""
        with self._db.transaction() as db:
            cursor = db.execute(
                "DELETE FROM certificate_policies WHERE certificate_id = ? AND policy_name = ?",
                (certificate_id, policy_name),
            )
            return cursor.rowcount > 0


def _certificate_status(db: sqlite3.Connection, certificate_id: str) -> str:
    row = db.execute("SELECT status FROM certificates WHERE certificate_id = ?", (certificate_id,)).fetchone()
    if row is None:
        raise ResourceNotFound(f"Certificate {certificate_id} does not exist")
    return str(row["status"])


def _require_thing(db: sqlite3.Connection, thing_name: str) -> None:
    if not db.execute("SELECT 1 FROM things WHERE thing_name = ?", (thing_name,)).fetchone():
        raise ResourceNotFound(f"Thing {thing_name} does not exist")


def _column(db: sqlite3.Connection, sql: str, *params: Any) -> list[str]:
    return [row[0] for row in db.execute(sql, params)]


def _names(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more
