"""The store: API keys, enrollments, registration records, idempotency records and the AWS pace.

SQLAlchemy lives here and nowhere else. One `Store` per process (made after the fork); its
queries are named by verb and grouped by table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from service.store.base import begin_transaction
from service.store.device_cas import DeviceCaQueries
from service.store.engine import describe, make_engine, migrate
from service.store.enrollments import EnrollmentEntry, EnrollmentQueries, EnrollmentRecord
from service.store.idempotency import IdempotencyQueries, IdempotencyRecord
from service.store.keys import KeyQueries, KeyRecord
from service.store.pace import PaceQueries, StorePace
from service.store.registrations import Registration, RegistrationFilter, RegistrationQueries

__all__ = [
    "EnrollmentEntry",
    "EnrollmentRecord",
    "IdempotencyRecord",
    "KeyRecord",
    "Registration",
    "RegistrationFilter",
    "Store",
    "StorePace",
]


class Store:
    """The query groups, each call its own transaction; or, from `transaction()`, all bound to one."""

    # True only for the null store (service.store.null) of a service that keeps none.
    off = False

    def __init__(self, engine: Engine, connection: Connection | None = None) -> None:
        self.engine = engine
        self._connection = connection
        bind = connection if connection is not None else engine
        self.keys = KeyQueries(bind)
        self.enrollments = EnrollmentQueries(bind)
        self.registrations = RegistrationQueries(bind)
        self.idempotency = IdempotencyQueries(bind)
        self.pace = PaceQueries(bind)
        self.device_cas = DeviceCaQueries(bind)

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """One transaction for several queries: a commit (and, on SQLite, the write lock) costs
        more than a statement, so a request's checks share one. An exception rolls it all back."""
        if self._connection is not None:
            yield self
            return
        with begin_transaction(self.engine, write=True) as connection:
            yield Store(self.engine, connection)

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
