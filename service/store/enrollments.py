"""Enrollments: the allowlist of devices per template, keyed by one parameter's value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache

from sqlalchemy import and_, bindparam, case, delete, func, insert, or_, select, update
from sqlalchemy.sql import Select

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
        """Add new entries and update existing ones, all in one transaction: (added, updated)."""
        added = updated = 0
        with self._db() as db:
            for entry in entries:
                key = _key(entry.template, entry.parameter, entry.value)
                done = db.execute(
                    update(enrollments)
                    .where(key)
                    .values(enabled=entry.enabled, reprovision=entry.reprovision)
                )
                if done.rowcount:
                    updated += 1
                    continue
                db.execute(
                    insert(enrollments).values(
                        template=entry.template,
                        parameter=entry.parameter,
                        value=entry.value,
                        enabled=entry.enabled,
                        reprovision=entry.reprovision,
                        provisions=0,
                        created_at=at,
                    )
                )
                added += 1
        return added, updated

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
