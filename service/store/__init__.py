"""The store: API keys, enrollments, registration records and idempotency records.

SQLAlchemy lives here and nowhere else. One `Store` per process (made after the fork); its
queries are named by verb and grouped by table.
"""

from __future__ import annotations

from sqlalchemy import Engine

from service.store.engine import describe, make_engine, migrate
from service.store.enrollments import EnrollmentEntry, EnrollmentQueries, EnrollmentRecord
from service.store.idempotency import IdempotencyQueries, IdempotencyRecord
from service.store.keys import KeyQueries, KeyRecord
from service.store.registrations import Registration, RegistrationFilter, RegistrationQueries

__all__ = [
    "EnrollmentEntry",
    "EnrollmentRecord",
    "IdempotencyRecord",
    "KeyRecord",
    "Registration",
    "RegistrationFilter",
    "Store",
]


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keys = KeyQueries(engine)
        self.enrollments = EnrollmentQueries(engine)
        self.registrations = RegistrationQueries(engine)
        self.idempotency = IdempotencyQueries(engine)

    @classmethod
    def open(cls, url: str, *, upgrade: bool = True) -> Store:
        engine = make_engine(url)
        if upgrade:
            migrate(engine)
        return cls(engine)

    def describe(self) -> dict[str, object]:
        return describe(self.engine)

    def close(self) -> None:
        self.engine.dispose()
