"""Device CAs (enrollment groups): a manufacturer CA registered for a template, its block list and CRL.

A registered CA says which template its devices are provisioned with, how the template's
parameters come from a device certificate, whether a device may be provisioned again, whether
the group is enabled, and its own rate and quota (as an API key has). Every change to a CA, its
block list or its CRL bumps the CA's `revision`: workers keep what verification needs per CA and
read it again when the revision moved (service.callers.devices.trust).

The tables live here, on the store's metadata, beside the queries that use them.
"""

from __future__ import annotations

import builtins
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    bindparam,
    delete,
    insert,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql import Executable

from service.store.limits import LimitQueries, Limits
from service.store.tables import UtcDateTime, metadata, window_table

REPROVISION = ("once", "allow")
BLOCK_KINDS = ("serial", "fingerprint")

device_cas = Table(
    "device_cas",
    metadata,
    Column("ca_id", String(32), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("template", String(36), nullable=False),
    # The registered CA's PEM first (the trust anchor), then any certificates of its chain.
    Column("certificates", Text, nullable=False),
    Column("fingerprint_sha256", String(64), nullable=False),  # of the registered CA
    Column("subject", String(1024), nullable=False),  # RFC 4514, for people
    # Template parameter -> where its value comes from (service.callers.devices.parameters).
    Column("parameters", JSON, nullable=False),
    Column("reprovision", String(8), nullable=False, default="once"),  # once | allow
    Column("enabled", Boolean, nullable=False, default=True),
    # CA certificates allowed between the device certificate and the registered CA.
    Column("max_chain_depth", Integer, nullable=False),
    Column("max_provisions", Integer, nullable=True),
    Column("rate_per_minute", Integer, nullable=True),
    Column("provisions", Integer, nullable=False, default=0),
    Column("revision", Integer, nullable=False, default=1),
    Column("created_at", UtcDateTime(), nullable=False),
    Column("updated_at", UtcDateTime(), nullable=False),
    UniqueConstraint("template", "fingerprint_sha256", name="uq_device_ca"),
)

# A group's requests in one fixed minute: its rate limit shared by every worker and host.
device_ca_rate_windows = window_table("device_ca_rate_windows", "ca_id")


def _of_device_ca(constraint: str) -> Column[str]:
    """A row of a CA's (its block list, its CRL), deleted with it."""
    return Column(
        "ca_id",
        String(32),
        ForeignKey("device_cas.ca_id", ondelete="CASCADE", name=constraint),
        primary_key=True,
    )


device_ca_blocks = Table(
    "device_ca_blocks",
    metadata,
    _of_device_ca("fk_device_ca_blocks_ca"),
    Column("kind", String(16), primary_key=True),  # serial | fingerprint
    Column("value", String(256), primary_key=True),
    Column("reason", String(200), nullable=False, default=""),
    Column("created_at", UtcDateTime(), nullable=False),
)

device_ca_crls = Table(
    "device_ca_crls",
    metadata,
    _of_device_ca("fk_device_ca_crls_ca"),
    Column("crl", LargeBinary, nullable=False),  # DER, its signature checked when loaded
    Column("issuer", String(1024), nullable=False),
    Column("this_update", UtcDateTime(), nullable=False),
    Column("next_update", UtcDateTime(), nullable=True),
    Column("revoked", Integer, nullable=False),  # how many entries, for people
    Column("loaded_at", UtcDateTime(), nullable=False),
)


@dataclass(frozen=True)
class DeviceCaRecord:
    ca_id: str
    name: str
    template: str
    certificates: str
    fingerprint_sha256: str
    subject: str
    parameters: dict[str, Any]
    reprovision: str
    enabled: bool
    max_chain_depth: int
    max_provisions: int | None
    rate_per_minute: int | None
    provisions: int
    revision: int
    created_at: datetime
    updated_at: datetime

    def __repr__(self) -> str:  # the PEM is public, but has no business in a log line
        return f"DeviceCaRecord(ca_id={self.ca_id!r}, template={self.template!r}, revision={self.revision})"


@dataclass(frozen=True)
class BlockRecord:
    ca_id: str
    kind: str
    value: str
    reason: str
    created_at: datetime


@dataclass(frozen=True)
class CrlRecord:
    ca_id: str
    crl: bytes
    issuer: str
    this_update: datetime
    next_update: datetime | None
    revoked: int
    loaded_at: datetime

    def __repr__(self) -> str:
        return f"CrlRecord(ca_id={self.ca_id!r}, issuer={self.issuer!r}, revoked={self.revoked})"


# What an operator may change on a registered CA (its certificate and template stay: register
# another CA for another template or certificate).
CHANGEABLE = frozenset(
    {"name", "parameters", "reprovision", "enabled", "max_chain_depth", "max_provisions", "rate_per_minute"}
)

# Built once: building a statement costs more than running it.
_GET = select(device_cas).where(device_cas.c.ca_id == bindparam("b_ca_id"))
_REVISIONS = select(device_cas.c.ca_id, device_cas.c.revision)
_BLOCKS = (
    select(device_ca_blocks)
    .where(device_ca_blocks.c.ca_id == bindparam("b_ca_id"))
    .order_by(device_ca_blocks.c.kind, device_ca_blocks.c.value)
)
_CRL = select(device_ca_crls).where(device_ca_crls.c.ca_id == bindparam("b_ca_id"))


def _bump(ca_id: str, at: datetime, **values: Any) -> Executable:
    return (
        update(device_cas)
        .where(device_cas.c.ca_id == ca_id)
        .values(revision=device_cas.c.revision + 1, updated_at=at, **values)
    )


class DuplicateDeviceCa(Exception):
    """This CA certificate is already registered for this template."""


class DeviceCaQueries(LimitQueries):
    limits = Limits(device_cas, "ca_id", device_ca_rate_windows)

    def insert(self, record: DeviceCaRecord) -> None:
        """Raises DuplicateDeviceCa when the same CA is already registered for the template."""
        try:
            with self._db() as db:
                db.execute(insert(device_cas).values(**record.__dict__))
        except IntegrityError:
            raise DuplicateDeviceCa(record.fingerprint_sha256) from None

    def get(self, ca_id: str) -> DeviceCaRecord | None:
        with self._db(write=False) as db:
            row = db.execute(_GET, {"b_ca_id": ca_id}).mappings().first()
        return DeviceCaRecord(**row) if row else None

    def list(self, template: str | None = None) -> list[DeviceCaRecord]:
        query = select(device_cas).order_by(device_cas.c.created_at, device_cas.c.ca_id)
        if template is not None:
            query = query.where(device_cas.c.template == template)
        with self._db(write=False) as db:
            rows = db.execute(query).mappings().all()
        return [DeviceCaRecord(**row) for row in rows]

    def update(self, ca_id: str, at: datetime, changes: dict[str, Any]) -> bool:
        """Change what an operator may change (CHANGEABLE); False when there is no such CA."""
        unknown = set(changes) - CHANGEABLE
        if unknown:
            raise ValueError(f"not changeable: {', '.join(sorted(unknown))}")
        with self._db() as db:
            return db.execute(_bump(ca_id, at, **changes)).rowcount == 1

    def delete(self, ca_id: str) -> bool:
        """The CA, its block list and CRL (cascade) and its rate windows."""
        with self._db() as db:
            db.execute(delete(device_ca_blocks).where(device_ca_blocks.c.ca_id == ca_id))
            db.execute(delete(device_ca_crls).where(device_ca_crls.c.ca_id == ca_id))
            db.execute(delete(device_ca_rate_windows).where(device_ca_rate_windows.c.ca_id == ca_id))
            return db.execute(delete(device_cas).where(device_cas.c.ca_id == ca_id)).rowcount == 1

    def revisions(self) -> dict[str, int]:
        """Every CA's revision: one small read tells a worker which CAs changed."""
        with self._db(write=False) as db:
            return {ca_id: revision for ca_id, revision in db.execute(_REVISIONS).all()}

    def material(
        self, ca_id: str
    ) -> tuple[DeviceCaRecord, builtins.list[BlockRecord], CrlRecord | None] | None:
        """What verification needs of one CA, read in one transaction (so of one revision)."""
        with self._db(write=False) as db:
            row = db.execute(_GET, {"b_ca_id": ca_id}).mappings().first()
            if row is None:
                return None
            blocks = db.execute(_BLOCKS, {"b_ca_id": ca_id}).mappings().all()
            crl = db.execute(_CRL, {"b_ca_id": ca_id}).mappings().first()
        return (
            DeviceCaRecord(**row),
            [BlockRecord(**block) for block in blocks],
            CrlRecord(**crl) if crl else None,
        )

    # -- the block list ------------------------------------------------------------------------

    def block(self, ca_id: str, kind: str, value: str, at: datetime, reason: str = "") -> bool:
        """Add a block; False when it was there already. LookupError when there is no such CA."""
        if kind not in BLOCK_KINDS:
            raise ValueError(f"kind must be one of {', '.join(BLOCK_KINDS)}")
        upsert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(device_ca_blocks)
        with self._db() as db:
            if db.execute(_bump(ca_id, at)).rowcount != 1:
                raise LookupError(ca_id)
            # RETURNING, not rowcount: psycopg reports none for ON CONFLICT DO NOTHING.
            added = db.execute(
                upsert.values(ca_id=ca_id, kind=kind, value=value, reason=reason, created_at=at)
                .on_conflict_do_nothing(index_elements=["ca_id", "kind", "value"])
                .returning(device_ca_blocks.c.kind)
            ).first()
        return added is not None

    def unblock(self, ca_id: str, kind: str, value: str, at: datetime) -> bool:
        with self._db() as db:
            removed = db.execute(
                delete(device_ca_blocks).where(
                    device_ca_blocks.c.ca_id == ca_id,
                    device_ca_blocks.c.kind == kind,
                    device_ca_blocks.c.value == value,
                )
            ).rowcount
            if removed:
                db.execute(_bump(ca_id, at))
        return removed == 1

    def blocks(self, ca_id: str) -> builtins.list[BlockRecord]:
        with self._db(write=False) as db:
            rows = db.execute(_BLOCKS, {"b_ca_id": ca_id}).mappings().all()
        return [BlockRecord(**row) for row in rows]

    # -- the CRL -------------------------------------------------------------------------------

    def put_crl(self, record: CrlRecord) -> bool:
        """Load (or replace) the CA's CRL; False when there is no such CA."""
        with self._db() as db:
            if db.execute(_bump(record.ca_id, record.loaded_at)).rowcount != 1:
                return False
            db.execute(delete(device_ca_crls).where(device_ca_crls.c.ca_id == record.ca_id))
            db.execute(insert(device_ca_crls).values(**record.__dict__))
        return True

    def crl(self, ca_id: str) -> CrlRecord | None:
        with self._db(write=False) as db:
            row = db.execute(_CRL, {"b_ca_id": ca_id}).mappings().first()
        return CrlRecord(**row) if row else None

    def drop_crl(self, ca_id: str, at: datetime) -> bool:
        with self._db() as db:
            removed = db.execute(delete(device_ca_crls).where(device_ca_crls.c.ca_id == ca_id)).rowcount
            if removed:
                db.execute(_bump(ca_id, at))
        return removed == 1

    # -- rate and quota, as an API key has them --------------------------------------------------

    def count_request(self, ca_id: str, window: int) -> int:
        """Count one request in the group's minute window (atomic across hosts); the new count."""
        with self._db() as db:
            return self._count_in_window(db, ca_id, window)
