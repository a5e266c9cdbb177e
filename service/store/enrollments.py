"""Enrollments: the allowlist of devices per template, keyed by one parameter's value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import and_, bindparam, case, delete, func, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable, Select

from service.store.base import Queries
from service.store.tables import enrollments

# A claim whose holder never settled (its outcome is not recorded: the store failed after AWS
# answered and the settlement waits in a journal, or the worker died) does not lapse back to
# free on a 'once' entry: the device may exist, so it answers "may already be provisioned" until
# the settlement arrives or an operator allows another (reprovision=allow). An 'allow' entry
# may be provisioned again anyway: there a lapsed claim is taken over.
_CLAIM = (
    update(enrollments)
    .where(
        enrollments.c.id == bindparam("b_entry_id"),
        enrollments.c.enabled.is_(True),
        or_(
            enrollments.c.claim.is_(None),
            and_(enrollments.c.claim_expires_at < bindparam("b_now"), enrollments.c.reprovision == "allow"),
        ),
        or_(enrollments.c.reprovision == "allow", enrollments.c.provisions == 0),
    )
    .values(claim=bindparam("b_claim"), claim_expires_at=bindparam("b_until"))
)
# Counted whoever holds the entry now: a settlement is applied exactly once (its audit record
# is its key), and one that arrives late must still count on an 'allow' entry taken over since.
_OURS = enrollments.c.claim == bindparam("b_claim")
_COMPLETE = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("b_entry_id"))
    .values(
        provisions=enrollments.c.provisions + 1,
        last_thing_name=bindparam("b_thing_name"),
        last_certificate_id=bindparam("b_certificate_id"),
        last_provisioned_at=bindparam("b_at"),
        claim=case((_OURS, None), else_=enrollments.c.claim),
        claim_expires_at=case((_OURS, None), else_=enrollments.c.claim_expires_at),
    )
)
_RELEASE = (
    update(enrollments)
    .where(enrollments.c.id == bindparam("b_entry_id"), enrollments.c.claim == bindparam("b_claim"))
    .values(claim=None, claim_expires_at=None)
)


@cache
def _match(count: int) -> Select:  # type: ignore[type-arg]
    """The entry of a template matching any of `count` (parameter, value) pairs."""
    pairs = [
        and_(enrollments.c.parameter == bindparam(f"p{i}"), enrollments.c.value == bindparam(f"v{i}"))
        for i in range(count)
    ]
    return (
        select(enrollments)
        .where(enrollments.c.template == bindparam("template"), or_(*pairs))
        .order_by(enrollments.c.id)
        .limit(1)
    )


@dataclass(frozen=True)
class EnrollmentRecord:
    id: int
    template: str
    parameter: str
    value: str
    enabled: bool
    reprovision: str
    provisions: int
    last_thing_name: str | None
    last_certificate_id: str | None
    last_provisioned_at: datetime | None
    claim: str | None
    claim_expires_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class EnrollmentEntry:
    """One entry to add or update: what an operator sets."""

    template: str
    parameter: str
    value: str
    enabled: bool = True
    reprovision: str = "once"


class EnrollmentQueries(Queries):
    def upsert_all(self, entries: Iterable[EnrollmentEntry], at: datetime) -> tuple[int, int]:
        """Add new entries and update existing ones, all in one transaction: (added, updated).

        One INSERT ... ON CONFLICT DO UPDATE per chunk of entries, not two statements an entry:
        an import of 100,000 lines takes seconds. What was added is told by counting before and
        after (the transaction holds the write lock on SQLite; on PostgreSQL a concurrent import
        of the same template can only make the split between added and updated inexact)."""
        pending = list(entries)
        groups = sorted({(e.template, e.parameter) for e in pending})
        upsert = _upsert(self.dialect)
        with self._db() as db:
            before = sum(
                db.execute(_COUNT, {"b_template": t, "b_parameter": p}).scalar_one() for t, p in groups
            )
            for start in range(0, len(pending), _UPSERT_CHUNK):
                rows = [
                    {
                        "template": e.template,
                        "parameter": e.parameter,
                        "value": e.value,
                        "enabled": e.enabled,
                        "reprovision": e.reprovision,
                        "provisions": 0,
                        "created_at": at,
                    }
                    for e in pending[start : start + _UPSERT_CHUNK]
                ]
                db.execute(upsert, rows)
            after = sum(
                db.execute(_COUNT, {"b_template": t, "b_parameter": p}).scalar_one() for t, p in groups
            )
        added = after - before
        return added, len(pending) - added

    def change(self, template: str, parameter: str, value: str, **values: object) -> EnrollmentRecord | None:
        with self._db() as db:
            db.execute(update(enrollments).where(_key(template, parameter, value)).values(**values))
        return self.get(template, parameter, value)

    def delete(self, template: str, parameter: str, value: str) -> bool:
        with self._db() as db:
            return db.execute(delete(enrollments).where(_key(template, parameter, value))).rowcount == 1

    def get(self, template: str, parameter: str, value: str) -> EnrollmentRecord | None:
        with self._db(write=False) as db:
            row = db.execute(select(enrollments).where(_key(template, parameter, value))).mappings().first()
        return EnrollmentRecord(**row) if row else None

    def match(self, template: str, parameters: Mapping[str, str]) -> EnrollmentRecord | None:
        """The entry of `template` whose parameter has its value in `parameters`, if any."""
        if not parameters:
            return None
        values: dict[str, str] = {"template": template}
        for i, (name, value) in enumerate(parameters.items()):
            values[f"p{i}"], values[f"v{i}"] = name, value
        with self._db(write=False) as db:
            row = db.execute(_match(len(parameters)), values).mappings().first()
        return EnrollmentRecord(**row) if row else None

    def page(self, template: str | None, after_id: int, limit: int) -> list[EnrollmentRecord]:
        query = select(enrollments).where(enrollments.c.id > after_id)
        if template:
            query = query.where(enrollments.c.template == template)
        with self._db(write=False) as db:
            rows = db.execute(query.order_by(enrollments.c.id).limit(limit)).mappings().all()
        return [EnrollmentRecord(**row) for row in rows]

    def count(self, template: str | None = None) -> int:
        query = select(func.count()).select_from(enrollments)
        if template:
            query = query.where(enrollments.c.template == template)
        with self._db(write=False) as db:
            return int(db.execute(query).scalar_one())

    def ensure(
        self, template: str, parameter: str, value: str, reprovision: str, at: datetime
    ) -> EnrollmentRecord:
        """The entry, added (enabled) if missing; its reprovision policy set to `reprovision`
        either way: a device CA's policy applies to every device it has (one statement)."""
        with self._db() as db:
            row = (
                db.execute(
                    _ensure(self.dialect),
                    {
                        "template": template,
                        "parameter": parameter,
                        "value": value,
                        "enabled": True,
                        "reprovision": reprovision,
                        "provisions": 0,
                        "created_at": at,
                    },
                )
                .mappings()
                .one()
            )
        return EnrollmentRecord(**row)

    def claim(self, entry_id: int, claim: str, until: datetime, now: datetime) -> bool:
        """Hold an enabled entry for one provision; False if disabled, spent ('once') or held."""
        with self._db() as db:
            done = db.execute(
                _CLAIM, {"b_entry_id": entry_id, "b_claim": claim, "b_until": until, "b_now": now}
            )
        return done.rowcount == 1

    def complete(
        self, entry_id: int, claim: str, thing_name: str | None, certificate_id: str | None, at: datetime
    ) -> None:
        values = {"b_entry_id": entry_id, "b_claim": claim, "b_thing_name": thing_name}
        with self._db() as db:
            db.execute(_COMPLETE, {**values, "b_certificate_id": certificate_id, "b_at": at})

    def release(self, entry_id: int, claim: str) -> None:
        with self._db() as db:
            db.execute(_RELEASE, {"b_entry_id": entry_id, "b_claim": claim})


def _key(template: str, parameter: str, value: str):  # type: ignore[no-untyped-def]
    return and_(
        enrollments.c.template == template, enrollments.c.parameter == parameter, enrollments.c.value == value
    )


# upsert_all: entries per statement (within SQLite's and psycopg's limits on bound parameters).
_UPSERT_CHUNK = 500
_COUNT = select(func.count()).where(
    enrollments.c.template == bindparam("b_template"), enrollments.c.parameter == bindparam("b_parameter")
)


@cache
def _upsert(dialect: str) -> Executable:
    return _insert_or_set(dialect, "enabled", "reprovision")


@cache
def _ensure(dialect: str) -> Executable:
    return _insert_or_set(dialect, "reprovision").returning(*enrollments.c)


def _insert_or_set(dialect: str, *columns: str) -> postgresql.Insert | sqlite.Insert:
    """Insert an entry; one already there (the same template, parameter and value) takes these
    columns of the new one."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert_(enrollments)
    return statement.on_conflict_do_update(
        index_elements=[enrollments.c.template, enrollments.c.parameter, enrollments.c.value],
        set_={name: statement.excluded[name] for name in columns},
    )
