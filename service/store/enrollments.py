"""Enrollments: the allowlist of devices per template, keyed by one parameter's value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, and_, delete, func, insert, or_, select, update

from service.store.tables import enrollments


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


class EnrollmentQueries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def upsert_all(self, entries: Iterable[EnrollmentEntry], at: datetime) -> tuple[int, int]:
        """Add new entries and update existing ones, all in one transaction: (added, updated)."""
        added = updated = 0
        with self._engine.begin() as db:
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
        with self._engine.begin() as db:
            db.execute(update(enrollments).where(_key(template, parameter, value)).values(**values))
        return self.get(template, parameter, value)

    def delete(self, template: str, parameter: str, value: str) -> bool:
        with self._engine.begin() as db:
            return db.execute(delete(enrollments).where(_key(template, parameter, value))).rowcount == 1

    def get(self, template: str, parameter: str, value: str) -> EnrollmentRecord | None:
        with self._engine.connect() as db:
            row = db.execute(select(enrollments).where(_key(template, parameter, value))).mappings().first()
        return EnrollmentRecord(**row) if row else None

    def match(self, template: str, parameters: Mapping[str, str]) -> EnrollmentRecord | None:
        """The entry of `template` whose parameter has its value in `parameters`, if any."""
        if not parameters:
            return None
        pairs = [and_(enrollments.c.parameter == k, enrollments.c.value == v) for k, v in parameters.items()]
        query = (
            select(enrollments)
            .where(enrollments.c.template == template, or_(*pairs))
            .order_by(enrollments.c.id)
            .limit(1)
        )
        with self._engine.connect() as db:
            row = db.execute(query).mappings().first()
        return EnrollmentRecord(**row) if row else None

    def page(self, template: str | None, after_id: int, limit: int) -> list[EnrollmentRecord]:
        query = select(enrollments).where(enrollments.c.id > after_id)
        if template:
            query = query.where(enrollments.c.template == template)
        with self._engine.connect() as db:
            rows = db.execute(query.order_by(enrollments.c.id).limit(limit)).mappings().all()
        return [EnrollmentRecord(**row) for row in rows]

    def count(self, template: str | None = None) -> int:
        query = select(func.count()).select_from(enrollments)
        if template:
            query = query.where(enrollments.c.template == template)
        with self._engine.connect() as db:
            return int(db.execute(query).scalar_one())

    def claim(self, entry_id: int, claim: str, until: datetime, now: datetime) -> bool:
        """Hold an enabled entry for one provision; False if disabled, spent ('once') or held."""
        with self._engine.begin() as db:
            done = db.execute(
                update(enrollments)
                .where(
                    enrollments.c.id == entry_id,
                    enrollments.c.enabled.is_(True),
                    or_(enrollments.c.claim.is_(None), enrollments.c.claim_expires_at < now),
                    or_(enrollments.c.reprovision == "allow", enrollments.c.provisions == 0),
                )
                .values(claim=claim, claim_expires_at=until)
            )
        return done.rowcount == 1

    def complete(self, entry_id: int, claim: str, thing_name: str, certificate_id: str, at: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(
                update(enrollments)
                .where(enrollments.c.id == entry_id, enrollments.c.claim == claim)
                .values(
                    provisions=enrollments.c.provisions + 1,
                    last_thing_name=thing_name,
                    last_certificate_id=certificate_id,
                    last_provisioned_at=at,
                    claim=None,
                    claim_expires_at=None,
                )
            )

    def release(self, entry_id: int, claim: str) -> None:
        with self._engine.begin() as db:
            db.execute(
                update(enrollments)
                .where(enrollments.c.id == entry_id, enrollments.c.claim == claim)
                .values(claim=None, claim_expires_at=None)
            )


def _key(template: str, parameter: str, value: str):  # type: ignore[no-untyped-def]
    return and_(
        enrollments.c.template == template, enrollments.c.parameter == parameter, enrollments.c.value == value
    )
