"""The lifecycle's tables on SQLite and on a real PostgreSQL: retirements recorded once, leased to one
sweeper at a time across hosts (threads with their own engines, as processes would), postponed and
finished; what the audit trail says was handed out; an enrollment reopened unless a provision
holds it."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import inspect
from stores import in_threads

from service.store import EnrollmentEntry, Registration, Store
from service.store.engine import current_revision, head_revision
from service.store.lifecycle import LifecycleEvent, LifecycleQueries, Retirement

NOW = datetime(2026, 12, 6, 12, 0, 5, tzinfo=UTC)


def orphan(certificate_id: str, *, due: datetime = NOW, kind: str = "orphan") -> Retirement:
    return Retirement(certificate_id, kind, "register-lost", NOW - timedelta(seconds=5), due, template="demo")


def test_the_migration_makes_the_tables_and_the_certificate_index(stores: Callable[[], Store]) -> None:
    store = stores()
    assert current_revision(store.engine) == head_revision()
    inspector = inspect(store.engine)
    assert {"certificate_retirements", "lifecycle_events"} <= set(inspector.get_table_names())
    assert "ix_registrations_certificate" in {i["name"] for i in inspector.get_indexes("registrations")}


def test_a_certificate_is_recorded_once_and_its_report_pages(stores: Callable[[], Store]) -> None:
    records = LifecycleQueries(stores().engine)
    assert records.schedule([orphan("a" * 64), orphan("b" * 64)]) == 2
    assert records.schedule([orphan("a" * 64)]) == 0  # reported twice: one row
    first = records.page(state="pending", kind=None, thing_name=None, after="", limit=1)
    assert [r.certificate_id for r in first] == ["a" * 64]
    rest = records.page(state=None, kind="orphan", thing_name=None, after=first[-1].certificate_id, limit=10)
    assert [r.certificate_id for r in rest] == ["b" * 64]
    assert records.counts() == {("orphan", "pending"): 2}


def test_due_certificates_are_leased_to_one_sweeper_at_a_time(stores: Callable[[], Store]) -> None:
    hosts = [LifecycleQueries(stores().engine) for _ in range(4)]
    ids = [f"{n:064x}" for n in range(40)]
    hosts[0].schedule([orphan(i) for i in ids] + [orphan("f" * 64, due=NOW + timedelta(hours=1))])

    def sweep(index: int) -> list[str]:
        return [r.certificate_id for r in hosts[index].claim_due(NOW, NOW + timedelta(minutes=5), 100)]

    every = [i for taken in in_threads(len(hosts), sweep) for i in taken]
    assert sorted(every) == ids  # each due one once, the one not due by nobody
    assert hosts[0].claim_due(NOW, NOW + timedelta(minutes=5), 100) == []  # leased
    later = NOW + timedelta(minutes=6)
    assert len(hosts[1].claim_due(later, later + timedelta(minutes=5), 100)) == 40  # a lease lapses


def test_a_failed_retirement_is_postponed_and_a_done_one_finished(stores: Callable[[], Store]) -> None:
    records = LifecycleQueries(stores().engine)
    records.schedule([orphan("a" * 64), orphan("b" * 64)])
    records.claim_due(NOW, NOW + timedelta(minutes=5), 10)
    records.postpone("a" * 64, "DeleteConflictException: attached", NOW, NOW + timedelta(seconds=60))
    records.finish("b" * 64, "retired", NOW)
    assert records.claim_due(NOW + timedelta(seconds=30), NOW + timedelta(minutes=5), 10) == []
    [again] = records.claim_due(NOW + timedelta(seconds=61), NOW + timedelta(minutes=5), 10)
    assert (again.certificate_id, again.attempts, again.last_error) == (
        "a" * 64,
        1,
        "DeleteConflictException: attached",
    )
    done = records.get("b" * 64)
    assert done is not None and (done.state, done.done_at, done.lease_until) == ("retired", NOW, None)
    assert records.make_due("a" * 64, NOW) is True
    assert records.counts() == {("orphan", "pending"): 1, ("orphan", "retired"): 1}


def test_what_the_audit_trail_says_was_handed_out(stores: Callable[[], Store]) -> None:
    store = stores()
    records = LifecycleQueries(store.engine)
    for outcome, certificate_id in (("provisioned", "a" * 64), ("failed", "b" * 64)):
        store.registrations.insert(
            Registration(
                at=NOW,
                request_id="r",
                outcome=outcome,
                http_status=201 if outcome == "provisioned" else 504,
                duration_ms=1.0,
                thing_name="demo-1",
                certificate_id=certificate_id,
            )
        )
    records.add_event(
        LifecycleEvent(NOW, "rotate", "done", actor="k1", thing_name="demo-1", certificate_id="c" * 64)
    )
    records.add_event(LifecycleEvent(NOW, "revoke", "done", actor="k1", certificate_id="a" * 64))
    assert records.handed_out("a" * 64) and records.handed_out("c" * 64)
    assert not records.handed_out("b" * 64)
    assert sorted(i.certificate_id for i in records.issued(None)) == ["a" * 64, "c" * 64]
    assert records.issued(NOW + timedelta(seconds=1)) == []
    assert records.status_events(None) == {"a" * 64: ("revoke", NOW)}
    assert [e.action for e in records.events(thing_name="demo-1", certificate_ids=["a" * 64])] == [
        "revoke",
        "rotate",
    ]


def test_an_enrollment_is_reopened_unless_a_provision_holds_it(stores: Callable[[], Store]) -> None:
    store = stores()
    records = LifecycleQueries(store.engine)
    store.enrollments.upsert_all([EnrollmentEntry("demo", "SerialNumber", "SN-1")], NOW)
    entry = store.enrollments.get("demo", "SerialNumber", "SN-1")
    assert entry is not None
    assert store.enrollments.claim(entry.id, "held", NOW + timedelta(minutes=1), NOW)
    store.enrollments.complete(entry.id, "held", "demo-SN-1", "a" * 64, NOW)
    assert store.enrollments.claim(entry.id, "again", NOW + timedelta(minutes=1), NOW) is False  # once
    assert records.enrollments_of_thing("demo-SN-1") == [entry.id]
    assert records.reopen_enrollment(entry.id)
    assert store.enrollments.claim(entry.id, "again", NOW + timedelta(minutes=1), NOW)  # held now
    assert records.reopen_enrollment(entry.id) is False
    reopened: Any = store.enrollments.get("demo", "SerialNumber", "SN-1")
    assert reopened.claim == "again"
