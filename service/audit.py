"""The audit trail: one registration record per POST /provision attempt, never a secret.

A record holds who (key id, caller address), what (template, parameters, CSR or server key),
and how it ended (outcome, status, failing step, AWS's error code, thing, certificate id,
duration, request id, Idempotency-Key). Private keys, ownership tokens, API key secrets and
credentials have no column to go in. A record is written with the attempt's settlement
(service.callers.settlement): when the store is unavailable it waits in the local journal and
is written when the store is back, never allowed to take an identity away from its caller.
"""

from __future__ import annotations

import logging
import random
from datetime import datetime, timedelta

from service.errors import ServiceError
from service.store import Registration, Store

log = logging.getLogger("service.audit")

# Old records are pruned after about one request in this many (and by `audit prune`).
PRUNE_EVERY = 500


def _caller_text(registration: Registration) -> str:
    """Who asked, for the log line: the API key, or the device (its CA and certificate serial)."""
    if registration.key_id is None and registration.device_fingerprint is not None:
        return f"device_ca={registration.device_ca_id} device_serial={registration.device_serial}"
    return f"key={registration.key_id}"


class Audit:
    def __init__(self, store: Store, *, retention: timedelta) -> None:
        self._store = store
        self._retention = retention

    @staticmethod
    def log_attempt(registration: Registration) -> None:
        """The attempt's line in the service's log (its record is written by its settlement,
        service.callers.settlement, with what it reserved)."""
        log.info(
            "provision request_id=%s %s template=%s outcome=%s status=%s thing=%s %.0fms",
            registration.request_id,
            _caller_text(registration),
            registration.template,
            registration.outcome,
            registration.http_status,
            registration.thing_name,
            registration.duration_ms,
            extra={
                "template": registration.template,
                "outcome": registration.outcome,
                "status": registration.http_status,
                "duration_ms": registration.duration_ms,
                "step": registration.step,
            },
        )

    def maybe_prune(self, now: datetime) -> None:
        """Now and then, prune; in a transaction of its own, after the request's have committed
        (a prune inside one would hold SQLite's write lock for every worker meanwhile)."""
        if random.randrange(PRUNE_EVERY) == 0:
            try:
                self.prune(now)
            except ServiceError as error:
                log.error("pruning old audit records failed: %s", error.detail)

    def prune(self, now: datetime) -> int:
        removed = self._store.registrations.prune(now - self._retention)
        removed += self._store.idempotency.prune(now)
        return removed
