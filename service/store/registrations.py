"""Registration records: one row per POST /provision attempt, never a secret."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import ColumnElement, Executable

from service.store.base import Queries
from service.store.tables import registrations

_INSERT = insert(registrations)


@cache
def _insert_once(dialect: str) -> Executable:
    """Insert unless a record of this attempt exists, saying whether it did (one statement)."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(registrations)
        .on_conflict_do_nothing(index_elements=["attempt_id"])
        .returning(registrations.c.id)
    )


@dataclass(frozen=True)
class Registration:
    at: datetime
    request_id: str
    outcome: str
    http_status: int
    duration_ms: float
    key_id: str | None = None
    caller_address: str | None = None
    template: str | None = None
    parameters: dict[str, str] | None = None
    flow: str | None = None
    step: str | None = None
    problem: str | None = None
    aws_error_code: str | None = None
    thing_name: str | None = None
    certificate_id: str | None = None
    idempotency_key: str | None = None
    # Unique per attempt: a settlement applied twice (service.callers.settlement) finds it.
    attempt_id: str | None = None
    # A device caller's CA (enrollment group) and certificate (issuer, serial, fingerprint).
    device_ca_id: str | None = None
    device_issuer: str | None = None
    device_serial: str | None = None
    device_fingerprint: str | None = None
    id: int | None = field(default=None)


@dataclass(frozen=True)
class RegistrationFilter:
    since: datetime | None = None
    until: datetime | None = None
    key_id: str | None = None
    template: str | None = None
    thing_name: str | None = None
    outcome: str | None = None
    device_ca_id: str | None = None
    device_fingerprint: str | None = None


class RegistrationQueries(Queries):
    def insert(self, record: Registration) -> None:
        values: dict[str, Any] = {k: v for k, v in record.__dict__.items() if k != "id"}
        with self._db() as db:
            db.execute(_INSERT, values)

    def insert_once(self, record: Registration) -> bool:
        """Insert the record of an attempt (`attempt_id` set); False if it is already there."""
        values: dict[str, Any] = {k: v for k, v in record.__dict__.items() if k != "id"}
        with self._db() as db:
            return db.execute(_insert_once(self.dialect), values).first() is not None

    def page(self, where: RegistrationFilter, before_id: int | None, limit: int) -> list[Registration]:
        """Newest first; `before_id` continues from the last page."""
        c = registrations.c
        query = select(registrations)
        conditions: list[tuple[object, Callable[[Any], ColumnElement[bool]]]] = [
            (where.since, lambda v: c.at >= v),
            (where.until, lambda v: c.at < v),
            (where.key_id, lambda v: c.key_id == v),
            (where.template, lambda v: c.template == v),
            (where.thing_name, lambda v: c.thing_name == v),
            (where.outcome, lambda v: c.outcome == v),
            (where.device_ca_id, lambda v: c.device_ca_id == v),
            (where.device_fingerprint, lambda v: c.device_fingerprint == v),
            (before_id, lambda v: c.id < v),
        ]
        for value, condition in conditions:
            if value is not None:
                query = query.where(condition(value))
        with self._db(write=False) as db:
            rows = db.execute(query.order_by(c.id.desc()).limit(limit)).mappings().all()
        return [Registration(**row) for row in rows]

    def prune(self, older_than: datetime) -> int:
        with self._db() as db:
            return db.execute(delete(registrations).where(registrations.c.at < older_than)).rowcount
