"""The settlement journal on a real filesystem (and a real full disk), and its replay into a real
store by several workers at once: each settlement is written exactly once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from disks import fill, small_tmpfs

from service.callers import keys, settlement
from service.callers.model import KeySpec
from service.callers.settlement import Settlement, Settler
from service.store import EnrollmentEntry, Registration, RegistrationFilter, Store
from service.store.journal import Journal, JournalError, path_for

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def record(number: int, **extra: object) -> dict[str, object]:
    return {"id": f"r{number:04d}", "payload": "x" * 100, **extra}


def test_records_are_kept_marked_and_the_file_zeroed_when_none_is_left(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j", reserve=64 * 1024)
    assert (tmp_path / "j").stat().st_size == 64 * 1024 and journal.records() == []
    assert (tmp_path / "j").stat().st_mode & 0o777 == 0o600
    for number in range(3):
        journal.append(record(number))
    kept = journal.records()
    assert [r["id"] for _, r in kept] == ["r0000", "r0001", "r0002"]
    journal.done([(kept[1][0], "r0001")])
    assert [r["id"] for _, r in Journal(tmp_path / "j").records()] == ["r0000", "r0002"]  # another worker
    journal.done([(offset, str(r["id"])) for offset, r in kept])
    assert journal.records() == []
    assert (tmp_path / "j").read_bytes() == b"\0" * 64 * 1024  # zeroed, still reserved


def test_a_stale_mark_never_marks_a_newer_record(tmp_path: Path) -> None:
    first, second = Journal(tmp_path / "j"), Journal(tmp_path / "j")
    first.append(record(1))
    seen = first.records()
    second.done([(offset, str(r["id"])) for offset, r in second.records()])  # written by another worker
    first.append(record(2))  # lands where r0001 was
    first.done([(seen[0][0], "r0001")])  # the first worker's late mark
    assert [r["id"] for _, r in first.records()] == ["r0002"]


def test_a_line_torn_by_a_crash_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "j"
    journal = Journal(path, reserve=4096)
    journal.append(record(1))
    end = path.read_bytes().index(b"\0")
    with open(path, "r+b") as file:  # a crash in the middle of the next append, before its fsync
        file.seek(end)
        file.write(b'{"id":"r0002","pay')
    journal.append(record(3))
    assert [r["id"] for _, r in journal.records()] == ["r0001", "r0003"]


def test_workers_appending_at_once_lose_nothing(tmp_path: Path) -> None:
    journals = [Journal(tmp_path / "j", reserve=16 * 1024) for _ in range(4)]

    def append(index: int) -> None:
        for number in range(25):
            journals[index].append(record(index * 100 + number))

    threads = [threading.Thread(target=append, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    ids = sorted(str(r["id"]) for _, r in journals[0].records())
    assert ids == sorted(f"r{i * 100 + n:04d}" for i in range(4) for n in range(25))


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only)."""
    with small_tmpfs(tmp_path / "disk", "size=1m") as disk:
        yield disk


def test_the_reserve_keeps_records_on_a_full_disk(full_disk: Path) -> None:
    journal = Journal(full_disk / "store.db.settlements", reserve=64 * 1024)
    filler = fill(full_disk)  # until not one byte more fits
    number = 0
    with pytest.raises(JournalError):
        while True:  # into the reserve, then past it
            journal.append(record(number, payload="y" * 1000))
            number += 1
    assert number >= 60  # the reserve held about 64 KiB of records
    kept = journal.records()
    assert [r["id"] for _, r in kept] == [f"r{n:04d}" for n in range(number)]  # no half record
    filler.unlink()
    journal.append(record(number))
    assert len(journal.records()) == number + 1


def test_the_journal_is_named_after_its_database(tmp_path: Path) -> None:
    beside, reserve = path_for(f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "data")
    assert beside == tmp_path / "p.db.settlements" and reserve > 0
    one, none = path_for("postgresql+psycopg://u:secret@db.example:5432/one", tmp_path / "data")
    two, _ = path_for("postgresql+psycopg://u:secret@db.example:5432/two", tmp_path / "data")
    assert one.parent == tmp_path / "data" and one != two and none == 0 and "secret" not in str(one)


def test_replays_by_several_workers_write_each_settlement_once(tmp_path: Path, database_url: str) -> None:
    store = Store.open(database_url)
    key, _ = keys.issue(store, KeySpec(max_provisions=10), NOW)
    for _ in range(6):
        assert store.keys.take_provision(key.key_id)
    store.enrollments.upsert_all([EnrollmentEntry("demo", "SerialNumber", f"J-{i}") for i in range(3)], NOW)
    # What a worker left when the store failed: three provisions, three failures, and one record
    # the store refuses for good.
    journal = Journal(tmp_path / "journal")
    for index in range(6):
        entry = store.enrollments.get("demo", "SerialNumber", f"J-{index % 3}")
        assert entry is not None
        claim = f"claim-{index}"
        registration = Registration(
            at=NOW,
            request_id=f"req-{index}",
            outcome="provisioned" if index < 3 else "failed",
            http_status=201 if index < 3 else 502,
            duration_ms=5.0,
            key_id=key.key_id,
            attempt_id=settlement.new_attempt_id(),
        )
        if index < 3:
            assert store.enrollments.claim(entry.id, claim, NOW, NOW)
            ops = [settlement.complete_enrollment(entry.id, claim, f"demo-J-{index}", "c" * 64, NOW)]
        else:
            ops = [settlement.give_back_quota(key.key_id)]
        journal.append(Settlement(registration, ops).to_json())
    broken = Settlement(
        Registration(
            at=NOW,
            request_id="req-bad",
            outcome="failed",
            http_status=500,
            duration_ms=1.0,
            attempt_id="b" * 32,
        ),
        [{"op": "no-such-statement"}],
    )
    journal.append(broken.to_json())

    workers = [Settler(lambda: store, Journal(tmp_path / "journal")) for _ in range(3)]
    left = [0] * 3
    threads = [
        threading.Thread(target=lambda i=i: left.__setitem__(i, workers[i].replay())) for i in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert left == [0, 0, 0] and journal.records() == []
    records = store.registrations.page(RegistrationFilter(), None, 100)
    assert sorted(r.request_id for r in records) == [f"req-{i}" for i in range(6)]
    assert store.keys.get(key.key_id).provisions == 3  # type: ignore[union-attr]
    for index in range(3):
        entry = store.enrollments.get("demo", "SerialNumber", f"J-{index}")
        assert entry is not None and entry.provisions == 1 and entry.claim is None
    rejected = (tmp_path / "journal.rejected").read_text()
    assert "req-bad" in rejected and "KeyError" in rejected
    # A worker that starts later finds nothing to write.
    assert Settler(lambda: store, Journal(tmp_path / "journal")).replay() == 0
    store.close()


def test_a_journaled_answer_keeps_no_private_key(tmp_path: Path) -> None:
    answer = {
        "thingName": "demo-K-1",
        "certificateId": "c" * 64,
        "certificatePem": "-----BEGIN CERTIFICATE-----\n...",
        "privateKey": "-----BEGIN RSA PRIVATE KEY-----\nsecret\n-----END RSA PRIVATE KEY-----\n",
    }
    registration = Registration(
        at=NOW, request_id="r-k", outcome="provisioned", http_status=201, duration_ms=1.0, attempt_id="k" * 32
    )
    Journal(tmp_path / "j").append(
        Settlement(registration, [settlement.finish_idempotency("k1", "idem", 201, answer)]).to_json()
    )
    kept = (tmp_path / "j").read_bytes()
    assert b"demo-K-1" in kept and b"PRIVATE KEY" not in kept and b"secret" not in kept
    (op,) = Settlement.from_json(Journal(tmp_path / "j").records()[0][1]).ops
    assert op["hadPrivateKey"] is True  # so a replay answers 410, naming the identity
