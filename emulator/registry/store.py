"""The state of the emulated AWS IoT account: certificates, things, policies, in SQLite.

The `Registry` writes what fleet provisioning creates and holds the readers (`views`, `pages`)
and AWS's rules for changes (`lifecycle`), all on one `Database`. Timestamps come from an injectable
clock (seconds since the epoch) so that the 1-hour lifetimes can be tested without waiting.

Ownership tokens are secrets: only their SHA-256 is stored (they are 384 random bits, so an
unsalted hash cannot be reversed by guessing) and no message contains one.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError, InvalidRequest, InvalidToken, ResourceConflict
from emulator.registry import schema
from emulator.registry.database import Database
from emulator.registry.lifecycle import Lifecycle
from emulator.registry.overrides import OVERRIDE_VALUES, override_thing
from emulator.registry.pages import Pages
from emulator.registry.specs import Evaluation, PolicySpec, ThingSpec
from emulator.registry.views import Views

FILENAME = "registry.sqlite3"
CERTIFICATE_STATUSES = ("ACTIVE", "INACTIVE", "REVOKED", "PENDING_ACTIVATION")
TOKEN_MESSAGE = "certificate ownership token is invalid or expired"


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _parameter_error(message: str) -> InvalidRequest:
    return InvalidRequest(message, status=400, code="InvalidParameterException")


def _canonical_document(document: str, policy_name: str) -> str:
    try:
        parsed = json.loads(document)
    except ValueError:
        parsed = None
    if not isinstance(parsed, dict):
        raise _parameter_error(f"policy '{policy_name}' document is not a JSON object")
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"))


def _record(spec: ThingSpec) -> tuple[object, ...]:
    return (spec.attributes, spec.thing_type_name, spec.billing_group, spec.thing_groups)


class Registry:
    """Certificates, things, policies and template uses of one emulated account.

    The rules AWS applies to them live here, so both planes get them: RegisterThing over MQTT,
    and the control plane's UpdateCertificate, DeleteCertificate, DeleteThing... (`lifecycle`).
    Whoever must react to a certificate's change (the listeners that close its connections)
    registers with `on_certificate_change`.

    `token_lifetime`: seconds an ownership token (and its PENDING_ACTIVATION certificate) lives;
    AWS documents 1 hour. `default_override`: the thing OverrideSettings used for a key the
    template leaves out. AWS's template page
    (https://docs.aws.amazon.com/iot/latest/developerguide/provision-template.html) does not
    document that default, so it is a setting rather than a guess buried here.
    """

    def __init__(
        self,
        path: str | Path,
        clock: Callable[[], float] = time.time,
        token_lifetime: float = 3600,
        default_override: str = "DO_NOTHING",
    ) -> None:
        if default_override not in OVERRIDE_VALUES:
            raise ConfigError(f"default_override must be one of {', '.join(OVERRIDE_VALUES)}")
        self.path = str(path)
        self._clock = clock
        self.token_lifetime = token_lifetime
        self.default_override = default_override
        self._certificate_listeners: list[Callable[[str], None]] = []
        self._db = Database(self.path)
        self.views = Views(self._db)  # the emulator's own records, for tests and the CLI
        self.pages = Pages(self._db)  # AWS's records and keyset pages, for the control plane
        self.lifecycle = Lifecycle(self._db, clock, self._changed)  # AWS's rules for changes

    @classmethod
    def in_data_dir(cls, data_dir: Path, **kwargs: Any) -> Registry:
        return cls(Path(data_dir) / FILENAME, **kwargs)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def reset(self) -> None:
        """Empty every table; the schema stays."""
        with self._db.transaction() as db:
            for table in schema.TABLES:
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM sqlite_sequence")

    # --- the records as the emulator shows them (tests, the CLI, `Emulator.registry`) ---------

    def describe_thing(self, name: str) -> dict[str, Any] | None:
        return self.views.describe_thing(name)

    def list_things(self) -> list[dict[str, Any]]:
        return self.views.list_things()

    def describe_certificate(self, certificate_id: str) -> dict[str, Any] | None:
        return self.views.describe_certificate(certificate_id)

    def list_certificates(self) -> list[dict[str, Any]]:
        return self.views.list_certificates()

    def list_policies(self) -> list[dict[str, Any]]:
        return self.views.list_policies()

    def list_template_uses(self) -> list[dict[str, Any]]:
        return self.views.list_template_uses()

    # --- who hears of a certificate's change ---------------------------------------------------

    def on_certificate_change(self, listener: Callable[[str], None]) -> None:
        """Call `listener(certificate_id)` after a certificate's status changed or it was deleted,
        from the thread that changed it, once the change is committed."""
        self._certificate_listeners.append(listener)

    def _changed(self, *certificate_ids: str) -> None:
        for certificate_id in certificate_ids:
            for listener in self._certificate_listeners:
                listener(certificate_id)

    # --- certificates and ownership tokens --------------------------------------------------

    @staticmethod
    def new_ownership_token() -> str:
        # AWS tokens are long opaque strings; 48 random bytes give 64 URL-safe characters.
        return secrets.token_urlsafe(48)

    def add_certificate(
        self,
        certificate_id: str,
        certificate_pem: str,
        *,
        status: str = "PENDING_ACTIVATION",
        ownership_token: str | None = None,
        owner: str = "fleet-provisioning",
    ) -> None:
        """Store a certificate. Adding the same certificate again without a token (the claim
        certificate on every start) is a no-op; any other duplicate is a ResourceConflict."""
        self._check_status(status)
        self.expire_pending()
        now = self._clock()
        token_sha256 = None if ownership_token is None else _token_hash(ownership_token)
        with self._db.transaction() as db:
            row = db.execute(
                "SELECT certificate_pem FROM certificates WHERE certificate_id = ?", (certificate_id,)
            ).fetchone()
            if row is not None:
                if row["certificate_pem"] == certificate_pem and ownership_token is None:
                    return
                raise ResourceConflict(f"certificate {certificate_id} already exists")
            db.execute(
                "INSERT INTO certificates (certificate_id, certificate_pem, status, owner,"
                " token_sha256, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (certificate_id, certificate_pem, status, owner, token_sha256, now, now),
            )

    def certificate_for_token(self, token: str) -> str:
        """The certificate a valid, unredeemed token belongs to, without redeeming it."""
        now = self._clock()
        self.expire_pending(now)
        with self._db.reading() as db:
            return self._valid_token(db, token, now)

    def redeem_ownership_token(self, token: str) -> str:
        """The certificate the token was issued with; a token is good once, within its lifetime."""
        now = self._clock()
        self.expire_pending(now)
        with self._db.transaction() as db:
            return self._redeem(db, token, now)

    def _valid_token(self, db: sqlite3.Connection, token: str, now: float) -> str:
        row = db.execute(
            "SELECT certificate_id, token_redeemed_at, created_at FROM certificates WHERE token_sha256 = ?",
            (_token_hash(token),),
        ).fetchone()
        if (
            row is None
            or row["token_redeemed_at"] is not None
            or now - row["created_at"] > self.token_lifetime
        ):
            raise InvalidToken(TOKEN_MESSAGE)
        return str(row["certificate_id"])

    def _redeem(self, db: sqlite3.Connection, token: str, now: float) -> str:
        certificate_id = self._valid_token(db, token, now)
        db.execute(
            "UPDATE certificates SET token_redeemed_at = ? WHERE certificate_id = ?", (now, certificate_id)
        )
        return certificate_id

    def expire_pending(self, now: float | None = None) -> int:
        """Delete fleet-provisioning certificates still PENDING_ACTIVATION after the token lifetime.

        AWS deletes a certificate that RegisterThing did not activate within the hour (doc). So
        does this, whether or not its token was redeemed: a redeemed token whose RegisterThing
        failed cannot be used again, and its certificate would otherwise stay forever.
        """
        cutoff = (self._clock() if now is None else now) - self.token_lifetime
        expired = "status = 'PENDING_ACTIVATION' AND token_sha256 IS NOT NULL AND created_at < ?"
        with self._db.transaction() as db:
            removed = [
                row["certificate_id"]
                for row in db.execute(f"SELECT certificate_id FROM certificates WHERE {expired}", (cutoff,))
            ]
            if removed:
                db.execute(f"DELETE FROM certificates WHERE {expired}", (cutoff,))
        self._changed(*removed)
        return len(removed)

    def next_expiry(self) -> float | None:
        """When the oldest certificate `expire_pending` would delete reaches the token lifetime."""
        rows = self._db.rows(
            "SELECT min(created_at) AS oldest FROM certificates"
            " WHERE status = 'PENDING_ACTIVATION' AND token_sha256 IS NOT NULL"
        )
        oldest = rows[0]["oldest"] if rows else None
        return None if oldest is None else float(oldest) + self.token_lifetime

    def certificate_status(self, certificate_id: str) -> str | None:
        rows = self._db.rows("SELECT status FROM certificates WHERE certificate_id = ?", certificate_id)
        return str(rows[0]["status"]) if rows else None

    def set_certificate_status(self, certificate_id: str, status: str) -> None:
        """Set any status, without AWS's rules (for tests and tools; the control plane's
        UpdateCertificate is `update_certificate`)."""
        self._check_status(status)
        with self._db.transaction() as db:
            cursor = db.execute(
                "UPDATE certificates SET status = ?, updated_at = ?,"
                " customer_version = customer_version + 1 WHERE certificate_id = ?",
                (status, self._clock(), certificate_id),
            )
            if cursor.rowcount == 0:
                raise InvalidRequest(
                    f"certificate {certificate_id} does not exist",
                    status=404,
                    code="ResourceNotFoundException",
                )
        self._changed(certificate_id)

    @staticmethod
    def _check_status(status: str) -> None:
        if status not in CERTIFICATE_STATUSES:
            raise _parameter_error(
                f"certificate status {status!r} is not one of {', '.join(CERTIFICATE_STATUSES)}"
            )

    # --- policies -----------------------------------------------------------------------------

    def create_policy(self, name: str, document: str, *, replace: bool = False) -> None:
        """Create a policy. The same document again is a no-op; a different one is a conflict
        unless `replace` (for seeding from configuration that changed between starts)."""
        with self._db.transaction() as db:
            self._put_policy(db, name, document, replace=replace)

    def _put_policy(self, db: sqlite3.Connection, name: str, document: str, *, replace: bool = False) -> None:
        canonical = _canonical_document(document, name)
        row = db.execute("SELECT policy_document FROM policies WHERE policy_name = ?", (name,)).fetchone()
        if row is None:
            db.execute("INSERT INTO policies VALUES (?, ?, ?)", (name, document, self._clock()))
        elif replace:
            db.execute("UPDATE policies SET policy_document = ? WHERE policy_name = ?", (document, name))
        elif _canonical_document(row["policy_document"], name) != canonical:
            raise ResourceConflict(f"policy '{name}' already exists with a different document")

    @staticmethod
    def inline_policy_name(template_name: str, logical_id: str, document: str) -> str:
        """Name of a policy created from a template's inline PolicyDocument: one per template,
        resource and document, so that re-provisioning reuses it and a changed document does not
        collide with the old one."""
        digest = hashlib.sha256(_canonical_document(document, logical_id).encode()).hexdigest()
        prefix = "-".join(part for part in (template_name, logical_id) if part)
        return f"{prefix[:119]}-{digest[:8]}"  # AWS policy names are at most 128 characters

    def _resolve_policy(self, db: sqlite3.Connection, spec: PolicySpec, template_name: str) -> str:
        if spec.policy_document is None:
            # AWS: PolicyName without PolicyDocument refers to a policy that must already exist.
            if not spec.policy_name:
                raise _parameter_error(
                    f"policy resource '{spec.logical_id}' has neither PolicyName nor PolicyDocument"
                )
            if not db.execute("SELECT 1 FROM policies WHERE policy_name = ?", (spec.policy_name,)).fetchone():
                raise _parameter_error(f"policy '{spec.policy_name}' does not exist")
            return spec.policy_name
        name = spec.policy_name or self.inline_policy_name(
            template_name, spec.logical_id, spec.policy_document
        )
        self._put_policy(db, name, spec.policy_document)
        return name

    # --- RegisterThing ------------------------------------------------------------------------

    def register_thing(
        self,
        certificate_id: str,
        evaluation: Evaluation,
        template_name: str,
        *,
        ownership_token: str | None = None,
    ) -> str:
        """Apply an evaluated template in one transaction; return the thing name ("" if none).

        Nothing is changed if any step fails (existing thing with FAIL, missing policy...).
        With `ownership_token`, the token is redeemed in the same transaction, so it is spent
        only if the registration succeeds; it must belong to `certificate_id`.
        """
        now = self._clock()
        status = evaluation.certificate_status or "ACTIVE"
        self._check_status(status)
        with self._db.transaction() as db:
            if ownership_token is not None and self._redeem(db, ownership_token, now) != certificate_id:
                raise InvalidToken(TOKEN_MESSAGE)
            if not db.execute(
                "SELECT 1 FROM certificates WHERE certificate_id = ?", (certificate_id,)
            ).fetchone():
                # Deleted by expiry between the token's redemption and now.
                raise InvalidToken(TOKEN_MESSAGE)
            thing_name = ""
            if evaluation.thing is not None:
                thing_name = evaluation.thing.thing_name
                self._put_thing(db, evaluation.thing, now)
                db.execute(
                    "INSERT OR IGNORE INTO thing_principals (thing_name, certificate_id) VALUES (?, ?)",
                    (thing_name, certificate_id),
                )
            for spec in evaluation.policies:
                db.execute(
                    "INSERT OR IGNORE INTO certificate_policies VALUES (?, ?)",
                    (certificate_id, self._resolve_policy(db, spec, template_name)),
                )
            db.execute(
                "UPDATE certificates SET status = ?, updated_at = ? WHERE certificate_id = ?",
                (status, now, certificate_id),
            )
            db.execute(
                "INSERT INTO template_uses (template_name, certificate_id, thing_name,"
                " used_at) VALUES (?, ?, ?, ?)",
                (template_name, certificate_id, thing_name, now),
            )
        self._changed(certificate_id)
        return thing_name

    def _put_thing(self, db: sqlite3.Connection, spec: ThingSpec, now: float) -> None:
        name = spec.thing_name
        row = db.execute("SELECT * FROM things WHERE thing_name = ?", (name,)).fetchone()
        if row is None:
            db.execute(
                "INSERT INTO things (thing_name, attributes, thing_type_name, billing_group,"
                " created_at, updated_at, thing_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    name,
                    json.dumps(spec.attributes),
                    spec.thing_type_name,
                    spec.billing_group,
                    now,
                    now,
                    str(uuid.uuid4()),
                ),
            )
        else:
            groups = db.execute(
                "SELECT group_name FROM thing_groups WHERE thing_name = ? ORDER BY rowid", (name,)
            ).fetchall()
            existing = ThingSpec(
                name,
                json.loads(row["attributes"]),
                row["thing_type_name"],
                tuple(g["group_name"] for g in groups),
                row["billing_group"],
            )
            spec = override_thing(existing, spec, self.default_override)
            if _record(spec) != _record(existing):
                # AWS counts a thing's versions: every change of its record makes a new one.
                db.execute(
                    "UPDATE things SET attributes = ?, thing_type_name = ?, billing_group = ?,"
                    " updated_at = ?, version = version + 1 WHERE thing_name = ?",
                    (json.dumps(spec.attributes), spec.thing_type_name, spec.billing_group, now, name),
                )
            db.execute("DELETE FROM thing_groups WHERE thing_name = ?", (name,))
        db.executemany(
            "INSERT OR IGNORE INTO thing_groups VALUES (?, ?)", [(name, group) for group in spec.thing_groups]
        )
