"""The store of a service that keeps none (PROVISIONER_DATABASE_URL=off): chosen once, in `create_app`.

Without a store only bootstrap keys exist (admin, no scope, no rate, no quota), so the gate has
nothing to count or reserve. The null store answers what such a service asks of a store: no
issued key and no enrollment is found, an attempt's settlement is dropped (there is no audit
trail to write it to), pruning removes nothing. What needs records kept is refused: an
Idempotency-Key (400, before anything is sent to AWS), and anything else (404, as the admin API
says). Code that presents the store to an operator (the admin API, /readyz) asks `store.off`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import NoReturn

from service.errors import InvalidInput, NotFound
from service.store import Store
from service.store.base import Queries
from service.store.device_cas import DeviceCaQueries
from service.store.enrollments import EnrollmentQueries, EnrollmentRecord
from service.store.idempotency import IdempotencyQueries
from service.store.keys import KeyQueries, KeyRecord
from service.store.pace import PaceQueries
from service.store.registrations import Registration, RegistrationQueries


def unavailable(what: str) -> str:
    """Why `what` (a sentence's subject and verb) cannot be had without a store."""
    return f"This service runs without a store (PROVISIONER_DATABASE_URL=off): {what} not available."


OFF = unavailable("keys, enrollments and the audit trail are")


class NullStore(Store):
    off = True

    def __init__(self) -> None:  # no engine: nothing to connect to, nothing kept
        self.keys = _Keys()
        self.enrollments = _Enrollments()
        self.registrations = _Registrations()
        self.idempotency = _Idempotency()
        self.pace = _Pace()
        self.device_cas = _DeviceCas()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        yield self

    def describe(self) -> dict[str, object]:
        return {"ready": True, "backend": "off"}

    def close(self) -> None:
        pass


class _Nothing(Queries):
    """A query group with no database: a query no store-less service makes is refused."""

    def __init__(self) -> None:
        pass

    def _db(self, *, write: bool = True) -> NoReturn:
        raise NotFound(OFF)


class _Keys(KeyQueries, _Nothing):
    def get(self, key_id: str) -> KeyRecord | None:
        return None  # no key was issued here: the caller's key is unknown (401)


class _Enrollments(EnrollmentQueries, _Nothing):
    def match(self, template: str, parameters: Mapping[str, str]) -> EnrollmentRecord | None:
        return None


class _Registrations(RegistrationQueries, _Nothing):
    def insert_once(self, record: Registration) -> bool:
        return True  # the attempt's log line (service.audit) is all that is left of it

    def prune(self, older_than: datetime) -> int:
        return 0


class _Idempotency(IdempotencyQueries, _Nothing):
    def _db(self, *, write: bool = True) -> NoReturn:
        # Only a request with an Idempotency-Key asks for a record (start, before the rest).
        raise InvalidInput(
            "Idempotency-Key needs the service's store, and this service runs without one "
            "(PROVISIONER_DATABASE_URL=off)"
        )

    def prune(self, now: datetime) -> int:
        return 0


class _Pace(PaceQueries, _Nothing):
    pass


class _DeviceCas(DeviceCaQueries, _Nothing):
    """No device CA is registered: every device certificate is from an unknown CA (403)."""

    def revisions(self) -> dict[str, int]:
        return {}
