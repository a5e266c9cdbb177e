"""The store on SQLite and on a real PostgreSQL: migrations, and the atomic reservations that keep
limits across workers and hosts (here: threads with their own engines, as processes would)."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from stores import in_threads, provisioned_record

from service.callers import keys, settlement
from service.callers.gate import Gate
from service.callers.idempotency import Idempotency
from service.callers.model import Caller, KeySpec
from service.callers.settlement import Op, Settlement
from service.errors import AlreadyProvisioned, Forbidden, IdempotencyConflict, RateLimited, StoreUnavailable
from service.store import EnrollmentEntry, Registration, RegistrationFilter, Store, engine
from service.store.engine import current_revision, head_revision

NOW = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)


def settle(store: Store, ops: list[Op]) -> bool:
    """Write ops as a request's settlement would (with an audit record of their own)."""
    return Settlement(provisioned_record(NOW), ops).apply(store)


def test_migrations_reach_head_once_and_are_idempotent(database_url: str) -> None:
    results = in_threads(4, lambda _: Store.open(database_url))
    assert all(isinstance(s, Store) for s in results), results
    assert current_revision(results[0].engine) == head_revision()
    assert results[0].describe()["ready"] is True
    for store in results:
        store.close()


def test_quota_holds_under_concurrent_reservations(stores: Any) -> None:
    store = stores()
    record, _ = keys.issue(store, KeySpec(max_provisions=5), NOW)
    per_host = [stores() for _ in range(4)]
    taken = in_threads(20, lambda i: per_host[i % 4].keys.take_provision(record.key_id))
    assert taken.count(True) == 5
    assert store.keys.get(record.key_id).provisions == 5  # type: ignore[union-attr]


def test_rate_window_counts_every_request_once_across_hosts(stores: Any) -> None:
    store = stores()
    record, _ = keys.issue(store, KeySpec(rate_per_minute=10), NOW)
    caller = keys.caller_of(record)
    gates = [Gate(stores(), claim_seconds=30) for _ in range(4)]

    def call(index: int) -> str:
        try:
            gates[index % 4].check_rate(caller, NOW)
        except RateLimited as refused:
            assert refused.retry_after == 55
            return "limited"
        return "ok"

    outcomes = in_threads(16, call)
    assert outcomes.count("ok") == 10 and outcomes.count("limited") == 6
    # The next minute starts afresh.
    gates[0].check_rate(caller, NOW + timedelta(minutes=1))


def test_a_once_enrollment_is_claimed_by_one_request_only(stores: Any) -> None:
    store = stores()
    store.enrollments.upsert_all([EnrollmentEntry("demo", "SerialNumber", "SN-1")], NOW)
    gates = [Gate(stores(), claim_seconds=30) for _ in range(4)]
    caller = Caller(key_id="bootstrap-1", role="admin", bootstrap=True)

    def admit(index: int) -> Any:
        return gates[index % 4].admit(caller, template="demo", parameters={"SerialNumber": "SN-1"}, now=NOW)

    results = in_threads(8, admit)
    admitted = [r for r in results if not isinstance(r, Exception)]
    assert len(admitted) == 1, results
    assert all(isinstance(r, AlreadyProvisioned) for r in results if isinstance(r, Exception))
    settle(store, admitted[0].succeeded("demo-SN-1", "ab" * 32, NOW))
    with pytest.raises(AlreadyProvisioned) as again:
        admit(0)
    assert again.value.extra["thingName"] == "demo-SN-1"


def test_an_unsettled_claim_never_lapses_back_to_free(stores: Any) -> None:
    store = stores()
    store.enrollments.upsert_all(
        [
            EnrollmentEntry("demo", "SerialNumber", "SN-2"),
            EnrollmentEntry("demo", "SerialNumber", "SN-7", reprovision="allow"),
        ],
        NOW,
    )
    gate = Gate(store, claim_seconds=30)
    caller = Caller(key_id="bootstrap-1", role="admin", bootstrap=True)
    once = {"template": "demo", "parameters": {"SerialNumber": "SN-2"}}
    held = gate.admit(caller, **once, now=NOW)
    with pytest.raises(AlreadyProvisioned) as running:  # held by a request that has not settled
        gate.admit(caller, **once, now=NOW)
    assert running.value.extra == {"inProgress": True}
    # Past its holder's deadline the outcome is still unknown: the device may exist.
    later = NOW + timedelta(seconds=31)
    with pytest.raises(AlreadyProvisioned) as unknown:
        gate.admit(caller, **once, now=later)
    assert (
        "may already be provisioned" in unknown.value.detail and "SerialNumber=SN-2" in unknown.value.detail
    )
    assert unknown.value.extra == {"thingName": None, "certificateId": None}
    # The settlement arrives (from a journal): now the answer names the thing.
    assert settle(store, held.succeeded("demo-SN-2", "ef" * 32, NOW))
    with pytest.raises(AlreadyProvisioned) as provisioned:
        gate.admit(caller, **once, now=later)
    assert provisioned.value.extra["thingName"] == "demo-SN-2"
    # An 'allow' entry may be provisioned again anyway: its lapsed claim is taken over, and the
    # late settlement of the first holder still counts.
    allow = {"template": "demo", "parameters": {"SerialNumber": "SN-7"}}
    first = gate.admit(caller, **allow, now=NOW)
    second = gate.admit(caller, **allow, now=later)
    assert settle(store, first.succeeded("demo-SN-7", "01" * 32, NOW))
    assert settle(store, second.succeeded("demo-SN-7", "02" * 32, later))
    entry = store.enrollments.get("demo", "SerialNumber", "SN-7")
    assert entry is not None and entry.provisions == 2 and entry.claim is None


def test_a_settlement_is_written_once(stores: Any) -> None:
    store = stores()
    record, _ = keys.issue(store, KeySpec(max_provisions=3), NOW)
    caller = keys.caller_of(record)
    admission = Gate(store, claim_seconds=30).admit(caller, template="demo", parameters={}, now=NOW)
    registration = Registration(
        at=NOW, request_id="r-once", outcome="failed", http_status=503, duration_ms=1.0, attempt_id="a" * 32
    )
    twice = [Settlement(registration, admission.failed()) for _ in range(2)]
    assert [s.apply(other) for s, other in zip(twice, (store, stores()), strict=True)] == [True, False]
    assert store.keys.get(record.key_id).provisions == 0  # type: ignore[union-attr]
    records = store.registrations.page(RegistrationFilter(), None, 10)
    assert [r.request_id for r in records] == ["r-once"]


def test_a_failed_provision_gives_back_its_quota_and_its_enrollment(stores: Any) -> None:
    store = stores()
    record, _ = keys.issue(store, KeySpec(max_provisions=1), NOW)
    store.enrollments.upsert_all([EnrollmentEntry("demo", "SerialNumber", "SN-3")], NOW)
    gate = Gate(store, claim_seconds=30)
    caller = keys.caller_of(record)
    args = {"template": "demo", "parameters": {"SerialNumber": "SN-3"}, "now": NOW}
    settle(store, gate.admit(caller, **args).failed())
    admission = gate.admit(caller, **args)
    settle(store, admission.succeeded("demo-SN-3", "cd" * 32, NOW))
    with pytest.raises(Forbidden):
        gate.admit(caller, template="demo", parameters={"SerialNumber": "SN-4"}, now=NOW)


def test_idempotency_records_one_first_attempt_across_hosts(stores: Any) -> None:
    caller = Caller(key_id="k000000000001", role="provision")
    body = {"templateName": "demo", "parameters": {"SerialNumber": "SN-5"}}
    digest = Idempotency.digest(body)
    guards = [Idempotency(stores(), ttl=timedelta(hours=24), lock=timedelta(seconds=60)) for _ in range(4)]
    results = in_threads(8, lambda i: guards[i % 4].begin(caller, "idem-1", digest, NOW, device="SN-5"))
    assert results.count(None) == 1, results
    assert all(isinstance(r, IdempotencyConflict) for r in results if r is not None)
    # Past the first attempt's deadline with no outcome recorded: it may have provisioned.
    with pytest.raises(AlreadyProvisioned) as unknown:
        guards[3].begin(caller, "idem-1", digest, NOW + timedelta(seconds=61), device="SerialNumber=SN-5")
    assert "SerialNumber=SN-5" in unknown.value.detail and "not been recorded" in unknown.value.detail
    answer = {"thingName": "demo-SN-5", "certificateId": "x"}
    settle(stores(), [settlement.finish_idempotency(caller.key_id, "idem-1", 201, answer)])
    replay = guards[1].begin(caller, "idem-1", digest, NOW + timedelta(hours=1), device="SN-5")
    assert replay is not None and replay.body == {"thingName": "demo-SN-5", "certificateId": "x"}
    assert (
        guards[2].begin(caller, "idem-1", digest, NOW + timedelta(hours=25), device="SN-5") is None
    )  # expired


def test_registrations_filter_page_and_prune(stores: Any) -> None:
    store = stores()
    for index in range(5):
        store.registrations.insert(
            Registration(
                at=NOW + timedelta(minutes=index),
                request_id=f"r{index}",
                outcome="provisioned" if index % 2 == 0 else "refused",
                http_status=201 if index % 2 == 0 else 403,
                duration_ms=12.5,
                key_id="k1",
                template="demo",
                parameters={"SerialNumber": f"SN-{index}"},
                thing_name=f"demo-SN-{index}" if index % 2 == 0 else None,
            )
        )
    newest = store.registrations.page(RegistrationFilter(), None, 2)
    assert [r.request_id for r in newest] == ["r4", "r3"]
    assert newest[0].at == NOW + timedelta(minutes=4) and newest[0].parameters == {"SerialNumber": "SN-4"}
    rest = store.registrations.page(RegistrationFilter(), newest[-1].id, 10)
    assert [r.request_id for r in rest] == ["r2", "r1", "r0"]
    refused = store.registrations.page(RegistrationFilter(outcome="refused"), None, 10)
    assert [r.request_id for r in refused] == ["r3", "r1"]
    window = RegistrationFilter(since=NOW + timedelta(minutes=1), until=NOW + timedelta(minutes=3))
    assert [r.request_id for r in store.registrations.page(window, None, 10)] == ["r2", "r1"]
    assert store.registrations.prune(NOW + timedelta(minutes=2)) == 2
    assert len(store.registrations.page(RegistrationFilter(), None, 10)) == 3


def test_an_unreachable_database_is_a_503_error_without_the_url(tmp_path: Any) -> None:
    url = "postgresql+psycopg://user:s3cret-pw@127.0.0.1:1/nothing"
    with pytest.raises(StoreUnavailable) as unavailable:
        Store.open(url)
    assert unavailable.value.status == 503
    assert "s3cret" not in str(unavailable.value) and "127.0.0.1" not in str(unavailable.value)


HOLD_THE_WRITE_LOCK = """
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("held", flush=True)
time.sleep(float(sys.argv[2]))
db.execute("COMMIT")
"""


def _every(store: Store) -> list[Registration]:
    return store.registrations.page(RegistrationFilter(), None, 10)


def _another_process_writes(path: Any, seconds: float) -> subprocess.Popen[str]:
    """Another process (another worker, the CLI) holding SQLite's write lock for `seconds`."""
    command = [sys.executable, "-c", HOLD_THE_WRITE_LOCK, str(path), str(seconds)]
    holder = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline() == "held\n"
    return holder


def test_a_writer_waits_for_another_process_write_lock_then_writes(tmp_path: Any) -> None:
    path = tmp_path / "store.db"
    store = Store.open(f"sqlite:///{path}")
    registration = dataclasses.replace(provisioned_record(NOW), request_id="while-locked")
    holder = _another_process_writes(path, 0.5)
    try:
        started = time.monotonic()
        store.registrations.insert(registration)  # one write transaction of its own
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=10)
        holder.stdout.close()
    assert waited >= 0.3  # it did wait for the other process
    assert [r.request_id for r in _every(store)] == ["while-locked"]
    # The busy handler is off only while the write lock is asked for: every other statement keeps it.
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() == engine.SQLITE_BUSY_TIMEOUT_MS
    store.close()


def test_a_write_lock_held_past_the_busy_timeout_is_a_503(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(engine, "SQLITE_BUSY_TIMEOUT_MS", 300)
    path = tmp_path / "store.db"
    store = Store.open(f"sqlite:///{path}")
    holder = _another_process_writes(path, 3)
    try:
        with pytest.raises(StoreUnavailable) as unavailable:
            store.registrations.insert(provisioned_record(NOW))
    finally:
        holder.wait(timeout=10)
        holder.stdout.close()
    assert unavailable.value.status == 503
    # free again: the store works
    store.registrations.insert(dataclasses.replace(provisioned_record(NOW), request_id="after"))
    assert [r.request_id for r in _every(store)] == ["after"]
    store.close()
