"""What a view needs from the app: settings, and this worker's provisioner and store."""

from __future__ import annotations

from datetime import timedelta

from flask import current_app

from service.audit import Audit
from service.callers.gate import Gate
from service.callers.idempotency import Idempotency
from service.config import Settings
from service.process import PerProcess
from service.provisioning.flow import Provisioner
from service.store import Store


def settings() -> Settings:
    value: Settings = current_app.extensions["settings"]
    return value


def provisioner() -> Provisioner:
    holder: PerProcess[Provisioner] = current_app.extensions["provisioner"]
    return holder.get()


def store() -> Store | None:
    holder: PerProcess[Store] | None = current_app.extensions["store"]
    return holder.get() if holder is not None else None


def gate() -> Gate:
    # A provision that never settles (a crash) holds its enrollment for its deadline and a margin.
    return Gate(store(), claim_seconds=settings().request_timeout_seconds + 30)


def idempotency() -> Idempotency | None:
    found = store()
    if found is None:
        return None
    s = settings()
    lock = timedelta(seconds=s.request_timeout_seconds + 30)
    return Idempotency(found, ttl=timedelta(hours=s.idempotency_ttl_hours), lock=lock)


def audit() -> Audit:
    return Audit(store(), retention=timedelta(days=settings().audit_retention_days))
