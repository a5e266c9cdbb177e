"""What the service does to identities after they were issued (service.lifecycle).

`certificate_retirements`: every certificate the service means to take out of AWS IoT, one row
each: an **orphan** (got from AWS, never handed out: a 502 answer-unproven, a refused or lost
RegisterThing, a caller gone) or a **retirement** (handed out, then replaced by a rotation or
taken by a decommission). The sweep (service.lifecycle.orphans) deactivates and deletes each once
it is due, retrying a failure later; a worker holds a row by a lease while it works on it, so
workers and hosts sweeping at once never work on the same certificate.

`lifecycle_events`: the audit trail of lifecycle actions (revoke, suspend, reactivate,
decommission, rotate, retire), one row each, with who asked and what was done. Never a secret:
certificate ids and thing names only.

The tables live here, on the store's metadata, beside the queries that use them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    Index,
    Integer,
    String,
    Table,
    and_,
    bindparam,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from service.store.base import Queries
from service.store.registrations import Registration
from service.store.tables import UtcDateTime, audit_id, enrollments, metadata, registrations

KINDS = ("orphan", "retirement")
STATES = ("pending", "retired", "gone", "kept")

certificate_retirements = Table(
    "certificate_retirements",
    metadata,
    Column("certificate_id", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # orphan | retirement
    # orphan: answer-unproven | register-refused | register-lost | register-not-sent | caller-gone
    # | error; retirement: rotated | decommissioned
    Column("reason", String(32), nullable=False),
    Column("thing_name", String(128), nullable=True),
    Column("template", String(64), nullable=True),
    Column("request_id", String(64), nullable=True),
    Column("recorded_at", UtcDateTime(), nullable=False),
    Column("due_at", UtcDateTime(), nullable=False),  # the sweep leaves it alone until then
    # pending | retired (deactivated and deleted) | gone (AWS had none) | kept (found handed out)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(500), nullable=True),
    Column("last_attempt_at", UtcDateTime(), nullable=True),
    Column("done_at", UtcDateTime(), nullable=True),
    Column("lease_until", UtcDateTime(), nullable=True),
)
Index("ix_retirements_state_due", certificate_retirements.c.state, certificate_retirements.c.due_at)
Index("ix_retirements_thing", certificate_retirements.c.thing_name)

lifecycle_events = Table(
    "lifecycle_events",
    metadata,
    audit_id(),
    Column("at", UtcDateTime(), nullable=False),
    Column("action", String(32), nullable=False),
    Column("actor", String(64), nullable=True),  # an API key id, "cli" or "sweep"
    Column("thing_name", String(128), nullable=True),
    Column("certificate_id", String(64), nullable=True),
    Column("outcome", String(16), nullable=False),  # done | failed
    Column("detail", JSON, nullable=True),
    Column("request_id", String(64), nullable=True),
)
Index("ix_lifecycle_events_thing", lifecycle_events.c.thing_name, lifecycle_events.c.id)
Index("ix_lifecycle_events_certificate", lifecycle_events.c.certificate_id)

# Whether a certificate was handed out, and reconcile's lookups, go by certificate id.
Index("ix_registrations_certificate", registrations.c.certificate_id)


@dataclass(frozen=True)
class Retirement:
    certificate_id: str
    kind: str
    reason: str
    recorded_at: datetime
    due_at: datetime
    thing_name: str | None = None
    template: str | None = None
    request_id: str | None = None
    state: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    last_attempt_at: datetime | None = None
    done_at: datetime | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class LifecycleEvent:
    at: datetime
    action: str
    outcome: str
    actor: str | None = None
    thing_name: str | None = None
    certificate_id: str | None = None
    detail: dict[str, Any] | None = None
    request_id: str | None = None
    id: int | None = field(default=None)


@dataclass(frozen=True)
class Issued:
    """A certificate the audit trail says was handed out (a 201, or a rotation)."""

    certificate_id: str
    thing_name: str | None
    at: datetime


@cache
def _schedule(dialect: str) -> Executable:
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(certificate_retirements)
        .on_conflict_do_nothing(index_elements=["certificate_id"])
        .returning(certificate_retirements.c.certificate_id)
    )


_r = certificate_retirements.c
_CLAIM = (
    update(certificate_retirements)
    .where(
        _r.certificate_id == bindparam("b_id"),
        _r.state == "pending",
        _r.due_at <= bindparam("b_now"),
        or_(_r.lease_until.is_(None), _r.lease_until < bindparam("b_now")),
    )
    .values(lease_until=bindparam("b_until"))
)
_HANDED_OUT = (
    select(registrations.c.id)
    .where(
        registrations.c.certificate_id == bindparam("b_id"),
        registrations.c.outcome.in_(("provisioned", "replayed")),
    )
    .limit(1)
)


class LifecycleQueries(Queries):
    # -- retirements ---------------------------------------------------------------------------

    def schedule(self, retirements: Iterable[Retirement]) -> int:
        """Record certificates to retire; one already recorded keeps its row. How many were new."""
        rows = [_values(r) for r in retirements]
        if not rows:
            return 0
        added = 0
        with self._db() as db:
            for row in rows:
                added += db.execute(_schedule(self.dialect), row).first() is not None
        return added

    def claim_due(self, now: datetime, lease_until: datetime, limit: int) -> list[Retirement]:
        """Up to `limit` pending retirements that are due, each leased to the caller until
        `lease_until` (one conditional UPDATE each: two sweepers never hold the same row)."""
        query = (
            select(certificate_retirements)
            .where(
                _r.state == "pending",
                _r.due_at <= now,
                or_(_r.lease_until.is_(None), _r.lease_until < now),
            )
            .order_by(_r.due_at)
            .limit(limit)
        )
        with self._db(write=False) as db:
            candidates = [Retirement(**row) for row in db.execute(query).mappings().all()]
        claimed = []
        for candidate in candidates:
            with self._db() as db:
                got = db.execute(
                    _CLAIM, {"b_id": candidate.certificate_id, "b_now": now, "b_until": lease_until}
                )
            if got.rowcount == 1:
                claimed.append(candidate)
        return claimed

    def finish(self, certificate_id: str, state: str, at: datetime, error: str | None = None) -> None:
        with self._db() as db:
            db.execute(
                update(certificate_retirements)
                .where(_r.certificate_id == certificate_id)
                .values(
                    state=state,
                    done_at=at,
                    last_attempt_at=at,
                    attempts=_r.attempts + 1,
                    last_error=error[:500] if error else None,
                    lease_until=None,
                )
            )

    def postpone(self, certificate_id: str, error: str, at: datetime, due_at: datetime) -> None:
        """A failed attempt: tried again from `due_at`."""
        with self._db() as db:
            db.execute(
                update(certificate_retirements)
                .where(_r.certificate_id == certificate_id)
                .values(
                    attempts=_r.attempts + 1,
                    last_error=error[:500],
                    last_attempt_at=at,
                    due_at=due_at,
                    lease_until=None,
                )
            )

    def make_due(self, certificate_id: str, at: datetime) -> bool:
        """Retire a pending certificate at `at` at the latest (a grace cut short)."""
        with self._db() as db:
            done = db.execute(
                update(certificate_retirements)
                .where(_r.certificate_id == certificate_id, _r.state == "pending", _r.due_at > at)
                .values(due_at=at)
            )
        return done.rowcount == 1

    def get(self, certificate_id: str) -> Retirement | None:
        with self._db(write=False) as db:
            row = (
                db.execute(select(certificate_retirements).where(_r.certificate_id == certificate_id))
                .mappings()
                .first()
            )
        return Retirement(**row) if row else None

    def page(
        self, *, state: str | None, kind: str | None, thing_name: str | None, after: str, limit: int
    ) -> list[Retirement]:
        """Ordered by certificate id; `after` is the last id of the previous page ("" first)."""
        query = select(certificate_retirements).where(_r.certificate_id > after)
        if state:
            query = query.where(_r.state == state)
        if kind:
            query = query.where(_r.kind == kind)
        if thing_name:
            query = query.where(_r.thing_name == thing_name)
        with self._db(write=False) as db:
            rows = db.execute(query.order_by(_r.certificate_id).limit(limit)).mappings().all()
        return [Retirement(**row) for row in rows]

    def for_certificates(self, certificate_ids: Iterable[str]) -> dict[str, Retirement]:
        ids = list(certificate_ids)
        found: dict[str, Retirement] = {}
        with self._db(write=False) as db:
            for start in range(0, len(ids), 500):
                query = select(certificate_retirements).where(_r.certificate_id.in_(ids[start : start + 500]))
                for row in db.execute(query).mappings().all():
                    found[row["certificate_id"]] = Retirement(**row)
        return found

    def all(self) -> dict[str, Retirement]:
        with self._db(write=False) as db:
            rows = db.execute(select(certificate_retirements)).mappings().all()
        return {row["certificate_id"]: Retirement(**row) for row in rows}

    def counts(self) -> dict[tuple[str, str], int]:
        """(kind, state) -> how many."""
        query = select(_r.kind, _r.state, func.count()).group_by(_r.kind, _r.state)
        with self._db(write=False) as db:
            return {(kind, state): int(n) for kind, state, n in db.execute(query).all()}

    # -- the audit trail, read for lifecycle decisions ----------------------------------------------

    def handed_out(self, certificate_id: str) -> bool:
        """Whether a caller got this certificate (a 201 or its replay), or a rotation issued it."""
        with self._db(write=False) as db:
            if db.execute(_HANDED_OUT, {"b_id": certificate_id}).first() is not None:
                return True
            rotated = select(lifecycle_events.c.id).where(
                lifecycle_events.c.certificate_id == certificate_id,
                lifecycle_events.c.action == "rotate",
                lifecycle_events.c.outcome == "done",
            )
            return db.execute(rotated.limit(1)).first() is not None

    def issued(self, since: datetime | None) -> list[Issued]:
        """Every certificate the audit trail says was handed out (since `since`), oldest first."""
        c = registrations.c
        provisioned = select(c.certificate_id, c.thing_name, c.at).where(
            c.outcome == "provisioned", c.certificate_id.is_not(None)
        )
        e = lifecycle_events.c
        rotated = select(e.certificate_id, e.thing_name, e.at).where(
            e.action == "rotate", e.outcome == "done", e.certificate_id.is_not(None)
        )
        if since is not None:
            provisioned = provisioned.where(c.at >= since)
            rotated = rotated.where(e.at >= since)
        with self._db(write=False) as db:
            rows = [*db.execute(provisioned).all(), *db.execute(rotated).all()]
        return sorted((Issued(*row) for row in rows), key=lambda i: i.at)

    def attempts(self, request_ids: Iterable[str]) -> list[Registration]:
        """The audit records of these requests (their template and parameters name the device)."""
        ids = sorted(set(request_ids))
        if not ids:
            return []
        query = select(registrations).where(registrations.c.request_id.in_(ids))
        with self._db(write=False) as db:
            return [Registration(**row) for row in db.execute(query).mappings().all()]

    def oldest_record(self) -> datetime | None:
        with self._db(write=False) as db:
            value: datetime | None = db.execute(select(func.min(registrations.c.at))).scalar_one()
        return value

    # -- enrollments ---------------------------------------------------------------------------------

    def reopen_enrollment(self, entry_id: int) -> bool:
        """Let a 'once' entry provision again (its device was decommissioned): unless a provision
        holds it right now. The count starts again; the audit trail keeps the history."""
        with self._db() as db:
            done = db.execute(
                update(enrollments)
                .where(enrollments.c.id == entry_id, enrollments.c.claim.is_(None))
                .values(provisions=0)
            )
        return done.rowcount == 1

    def enrollments_of_thing(self, thing_name: str) -> list[int]:
        """Entries whose last provision made this thing."""
        with self._db(write=False) as db:
            rows = db.execute(
                select(enrollments.c.id).where(enrollments.c.last_thing_name == thing_name)
            ).all()
        return [int(row[0]) for row in rows]

    # -- events ----------------------------------------------------------------------------------------

    def add_event(self, event: LifecycleEvent) -> None:
        values = {k: v for k, v in event.__dict__.items() if k != "id"}
        with self._db() as db:
            db.execute(insert(lifecycle_events), values)

    def events(
        self,
        *,
        thing_name: str | None = None,
        certificate_ids: Iterable[str] = (),
        before: int | None = None,
        limit: int = 100,
    ) -> list[LifecycleEvent]:
        """Newest first: a thing's events and those of its certificates."""
        e = lifecycle_events.c
        ids = list(certificate_ids)
        about = []
        if thing_name is not None:
            about.append(e.thing_name == thing_name)
        if ids:
            about.append(e.certificate_id.in_(ids))
        query = select(lifecycle_events)
        if about:
            query = query.where(or_(*about))
        if before is not None:
            query = query.where(and_(e.id < before))
        with self._db(write=False) as db:
            rows = db.execute(query.order_by(e.id.desc()).limit(limit)).mappings().all()
        return [LifecycleEvent(**row) for row in rows]

    def decommissioned_things(self) -> set[str]:
        e = lifecycle_events.c
        query = select(e.thing_name).where(
            e.action == "decommission", e.outcome == "done", e.thing_name.is_not(None)
        )
        with self._db(write=False) as db:
            return {row[0] for row in db.execute(query).all()}

    def status_events(self, since: datetime | None) -> dict[str, tuple[str, datetime]]:
        """Each certificate's latest status change made here: id -> (action, at)."""
        e = lifecycle_events.c
        query = select(e.certificate_id, e.action, e.at).where(
            e.action.in_(("revoke", "suspend", "reactivate")),
            e.outcome == "done",
            e.certificate_id.is_not(None),
        )
        if since is not None:
            query = query.where(e.at >= since)
        latest: dict[str, tuple[str, datetime]] = {}
        with self._db(write=False) as db:
            for certificate_id, action, at in db.execute(query.order_by(e.id)).all():
                latest[certificate_id] = (action, at)
        return latest


def _values(retirement: Retirement) -> dict[str, Any]:
    return dict(retirement.__dict__)
