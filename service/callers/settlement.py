"""Settling an attempt: what the store must keep once it has ended, written exactly once.

A `Settlement` is the attempt's audit record and the statements that settle what it reserved
(complete or release the enrollment claim, give back the quota unit, finish or forget the
Idempotency-Key). It is written in one transaction whose first statement inserts the audit
record under the attempt's unique id: written twice (a retry after a commit whose answer was
lost, a journal replayed by two workers), the second finds the record there and changes nothing.

`Settler.settle` writes it; when the store is unavailable it retries briefly (only when there
are reservations to settle: a bare audit record has nobody waiting on it), then keeps it in the
local journal (`service.store.journal`, fsync'd) before the caller is answered. A thread of the
worker writes journaled settlements once the store answers again, and a worker that starts
writes what an earlier one left. Until then, the reservations stay held: their device answers
"may already be provisioned" (409) once the holder's deadline has passed, never "free".
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.errors import ServiceError, StoreUnavailable
from service.store import Registration, Store
from service.store.journal import Journal

log = logging.getLogger("service.settlement")

Op = dict[str, Any]  # one statement of a settlement, as JSON (the journal's format)

# Retries of a settlement with reservations before it goes to the journal: short, because the
# caller waits for its answer meanwhile.
RETRY_FOR_SECONDS = 1.0
RETRY_FIRST_DELAY = 0.05
# How often a worker tries to write its journal while the store does not answer.
REPLAY_EVERY_SECONDS = 1.0


def new_attempt_id() -> str:
    return uuid.uuid4().hex


# -- the statements ---------------------------------------------------------------------------


def complete_enrollment(
    entry_id: int, claim: str, thing_name: str | None, certificate_id: str | None, at: datetime
) -> Op:
    return {
        "op": "enrollment.complete",
        "entry": entry_id,
        "claim": claim,
        "thingName": thing_name,
        "certificateId": certificate_id,
        "at": at.isoformat(),
    }


def release_enrollment(entry_id: int, claim: str) -> Op:
    return {"op": "enrollment.release", "entry": entry_id, "claim": claim}


def give_back_quota(key_id: str) -> Op:
    return {"op": "quota.give-back", "keyId": key_id}


def give_back_device_quota(ca_id: str) -> Op:
    return {"op": "device-ca.quota.give-back", "caId": ca_id}


def finish_idempotency(key_id: str, key: str, status: int, body: dict[str, Any]) -> Op:
    """Keep the first answer for replays: without its private key, which is never stored."""
    kept = {k: v for k, v in body.items() if k != "privateKey"}
    return {
        "op": "idempotency.finish",
        "keyId": key_id,
        "key": key,
        "status": status,
        "response": kept,
        "hadPrivateKey": "privateKey" in body,
    }


def forget_idempotency(key_id: str, key: str) -> Op:
    return {"op": "idempotency.forget", "keyId": key_id, "key": key}


_APPLY: dict[str, Callable[[Store, Op], None]] = {
    "enrollment.complete": lambda s, o: s.enrollments.complete(
        o["entry"], o["claim"], o["thingName"], o["certificateId"], datetime.fromisoformat(o["at"])
    ),
    "enrollment.release": lambda s, o: s.enrollments.release(o["entry"], o["claim"]),
    "quota.give-back": lambda s, o: s.keys.give_back_provision(o["keyId"]),
    "device-ca.quota.give-back": lambda s, o: s.device_cas.give_back_provision(o["caId"]),
    "idempotency.finish": lambda s, o: s.idempotency.finish(
        o["keyId"], o["key"], o["status"], o["response"], had_private_key=o["hadPrivateKey"]
    ),
    "idempotency.forget": lambda s, o: s.idempotency.forget(o["keyId"], o["key"]),
}


@dataclass(frozen=True)
class Settlement:
    registration: Registration  # its attempt_id is the settlement's id
    ops: list[Op] = field(default_factory=list)

    @property
    def id(self) -> str:
        return str(self.registration.attempt_id)

    def apply(self, store: Store) -> bool:
        """Write it in one transaction; False when it had been written already."""
        with store.transaction() as tx:
            if not tx.registrations.insert_once(self.registration):
                return False
            for op in self.ops:
                _APPLY[op["op"]](tx, op)
        return True

    def to_json(self) -> dict[str, Any]:
        record = {k: v for k, v in dataclasses.asdict(self.registration).items() if k != "id"}
        record["at"] = self.registration.at.isoformat()
        return {"id": self.id, "registration": record, "ops": self.ops}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Settlement:
        record = dict(data["registration"])
        record["at"] = datetime.fromisoformat(record["at"])
        return cls(Registration(**record), list(data["ops"]))


class Settler:
    """Writes settlements now, or journals them and writes them when the store is back.

    One per worker process (made after the fork). `store` is called for each write, so a store
    that could not be opened is tried again; a store that was closed (the worker is stopping)
    ends the replay thread, and what is left waits in the journal for the next worker.
    """

    def __init__(
        self,
        store: Callable[[], Store],
        journal: Journal | None,
        *,
        retry_for: float = RETRY_FOR_SECONDS,
        replay_every: float = REPLAY_EVERY_SECONDS,
    ) -> None:
        self._store = store
        self._journal = journal
        self._retry_for = retry_for
        self._replay_every = replay_every
        self._lock = threading.Lock()
        self._replaying = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        # Settlements neither the store nor the journal took (the journal's disk is full past
        # its reserve): kept here and retried; lost if this process dies first, and then the
        # held reservations still refuse a second identity.
        self._held: list[Settlement] = []

    def settle(self, settlement: Settlement) -> bool:
        """Write `settlement`; True when the store has it, False when it waits (journaled)."""
        deadline = time.monotonic() + (self._retry_for if settlement.ops else 0.0)
        delay = RETRY_FIRST_DELAY
        while True:
            try:
                settlement.apply(self._store())
            except ServiceError as error:
                if isinstance(error, StoreUnavailable) and time.monotonic() + delay <= deadline:
                    time.sleep(delay)
                    delay *= 3
                    continue
                self._keep(settlement, error)
                return False
            if self._thread is not None:
                self._wake.set()  # the store answers again: write what waits now
            return True

    def start(self) -> None:
        """Write what an earlier worker left in the journal (at start), in the background."""
        if self._journaled():
            self._run_replays(now=True)

    def replay(self) -> int:
        """Write what waits, oldest first, until the store fails; how many still wait."""
        if not self._replaying.acquire(blocking=False):
            return self._waiting()
        try:
            store = self._store()
            with self._lock:
                held, self._held = self._held, []
            for index, settlement in enumerate(held):
                try:
                    settlement.apply(store)
                except ServiceError:
                    with self._lock:
                        self._held[:0] = held[index:]
                    raise
            self._replay_journal(store)
        except ServiceError as error:
            log.debug("settlements wait for the store: %s", error.detail)
        except OSError as error:
            log.error("the settlement journal cannot be read or marked: %s", error)
        finally:
            self._replaying.release()
        return self._waiting()

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    # -- inside --------------------------------------------------------------------------------
    def _keep(self, settlement: Settlement, error: ServiceError) -> None:
        request_id = settlement.registration.request_id
        if self._journal is not None:
            try:
                self._journal.append(settlement.to_json())
            except OSError as full:  # JournalError, or a journal directory it may not write
                log.error(
                    "request %s: its outcome could not be written to the store (%s) nor to the "
                    "journal (%s); kept in memory and retried",
                    request_id,
                    error.detail,
                    full.strerror or full,
                )
                with self._lock:
                    self._held.append(settlement)
            else:
                log.warning(
                    "request %s: its outcome could not be written to the store (%s); journaled, "
                    "to be written when the store answers",
                    request_id,
                    error.detail,
                )
        else:
            log.error(
                "request %s: its outcome could not be written to the store: %s", request_id, error.detail
            )
            with self._lock:
                self._held.append(settlement)
        self._run_replays()

    def _replay_journal(self, store: Store) -> None:
        if self._journal is None:
            return
        written: list[tuple[int, str]] = []
        try:
            for offset, record in self._journal.records():
                try:
                    settlement = Settlement.from_json(record)
                    fresh = settlement.apply(store)
                except ServiceError:
                    raise
                except Exception as error:  # noqa: BLE001 - a record the store refuses for good
                    # The error's type only: a driver's message quotes the statement's values.
                    log.error(
                        "journaled settlement %s cannot be written (%s); set aside in %s.rejected",
                        record.get("id"),
                        type(error).__name__,
                        self._journal.path.name,
                    )
                    self._journal.reject(offset, record, type(error).__name__)
                    continue
                written.append((offset, settlement.id))
                log.info(
                    "request %s: its journaled outcome is written%s",
                    settlement.registration.request_id,
                    "" if fresh else " (it was already)",
                )
        finally:
            self._journal.done(written)

    def _waiting(self) -> int:
        with self._lock:
            held = len(self._held)
        return held + len(self._journaled())

    def _journaled(self) -> list[tuple[int, dict[str, Any]]]:
        if self._journal is None:
            return []
        try:
            return self._journal.records()
        except OSError as error:
            log.error("the settlement journal cannot be read: %s", error)
            return []

    def _run_replays(self, *, now: bool = False) -> None:
        if now:
            self._wake.set()
        with self._lock:
            if self._stopped.is_set() or (self._thread is not None and self._thread.is_alive()):
                return
            self._thread = threading.Thread(target=self._replays, name="settlement-replay", daemon=True)
            self._thread.start()

    def _replays(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self._replay_every)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                self._store()
            except StoreUnavailable:
                continue
            except ServiceError:  # the store was closed: this worker stops
                return
            if self.replay() == 0:
                with self._lock:
                    if not self._held and not self._journaled():
                        self._thread = None
                        return
