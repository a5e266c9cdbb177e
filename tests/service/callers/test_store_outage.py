"""The store fails while requests are at AWS IoT (the emulator's latency fault holds them there): a
real PostgreSQL stopped with `pg_ctl stop -m fast`, a real SQLite whose disk (a small tmpfs) is
filled. Every device ends with exactly one thing and one certificate, every attempt has its audit
record, and every Idempotency-Key replays what was first answered (docs/gate.md, "When the store
fails")."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from device_keys import make_csr
from disks import fill, small_tmpfs
from postgres import PostgresServer

from emulator import Fault

AT_AWS = [f"OUT-{i:02d}" for i in range(6)]  # at AWS when the store fails
DURING = [f"DUR-{i:02d}" for i in range(3)]  # first sent while the store is down
DEVICES = AT_AWS + DURING
REGISTER_LATENCY = 4.0


def issue_key(api: Any, **spec: Any) -> str:
    response = api.post("/admin/keys", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["apiKey"])


def provision(api: Any, key: str, serial: str, *, csr: str, headers: dict[str, str]) -> Any:
    body = {"templateName": "demo", "parameters": {"SerialNumber": serial}, "csr": csr}
    return api.post("/provision", json=body, key=key, headers=headers)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs: a disk that really fills (root only)."""
    with small_tmpfs(tmp_path / "disk", "size=16m,mode=0700") as disk:
        yield disk


class Line:
    """One factory line: enrolled `once` devices, a CSR-only key with a quota of one per device,
    and one CSR and Idempotency-Key per device."""

    def __init__(self, api: Any) -> None:
        self.api = api
        csv = "SerialNumber\n" + "".join(f"{serial}\n" for serial in DEVICES)
        imported = api.post(
            "/admin/enrollments/import?template=demo", data=csv, headers={"Content-Type": "text/csv"}
        )
        assert imported.status_code == 200, imported.text
        self.token = issue_key(api, enrolledOnly=True, serverKeys=False, maxProvisions=len(DEVICES))
        self.csrs = {serial: make_csr()[1] for serial in DEVICES}
        self.first: dict[str, Any] = {}
        self.attempts = 0
        self._lock = threading.Lock()

    def provision(self, serial: str, *, idempotency_key: str | None = None) -> Any:
        with self._lock:
            self.attempts += 1
        headers = {"Idempotency-Key": idempotency_key or f"line-7/{serial}"}
        response = provision(self.api, self.token, serial, csr=self.csrs[serial], headers=headers)
        self.first.setdefault(f"{serial}/{headers['Idempotency-Key']}", response)
        return response


def store_fails_while_at_aws(
    line: Line, emulator: Any, fail: Callable[[], None], recover: Callable[[], Any], caplog: Any
) -> Any:
    """The requests of AT_AWS are held at RegisterThing when `fail()` runs; DURING are sent and
    AT_AWS retried while the store is down; then `recover()` (which returns the API to use)."""
    caplog.set_level(logging.INFO, logger="service")
    emulator.set_fault("register_thing", Fault(latency=(REGISTER_LATENCY, REGISTER_LATENCY)))
    answers: dict[str, Any] = {}
    threads = [
        threading.Thread(target=lambda s=serial: answers.__setitem__(s, line.provision(s)))
        for serial in AT_AWS
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 20
    while len([c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]) < len(
        AT_AWS
    ):  # every one has its certificate: past the checks, waiting for RegisterThing
        assert time.monotonic() < deadline, "the requests never reached AWS IoT"
        time.sleep(0.02)
    fail()
    during = [line.provision(serial) for serial in DURING]
    for thread in threads:
        thread.join(60)
    retried = [line.provision(serial) for serial in AT_AWS[:2]]
    # The store was down when AWS answered: each caller still gets its identity.
    assert {s: answers[s].status_code for s in AT_AWS} == dict.fromkeys(AT_AWS, 201), {
        s: answers[s].text for s in AT_AWS
    }
    for response in during:
        assert response.status_code == 503 and response.json()["type"].endswith("/store-unavailable"), (
            response.text
        )
    for response in retried:
        # The key is held until the settlement is written: a store that cannot be read answers
        # 503; one that still reads (a full disk) says the first request still runs.
        assert response.json()["type"].endswith(("/store-unavailable", "/idempotency-in-progress")), (
            response.text
        )
    journaled = [r for r in caplog.records if "journaled, to be written" in r.getMessage()]
    assert len(journaled) >= len(AT_AWS) + len(DURING) + 2, [r.getMessage() for r in journaled]
    api = recover()
    line.api = api
    emulator.set_fault("register_thing", Fault())
    return answers


def check_every_device_once(line: Line, emulator: Any, answers: dict[str, Any]) -> None:
    api = line.api
    # Every attempt has its audit record, once the journal is written.
    deadline = time.monotonic() + 30
    while True:
        records = api.get("/admin/registrations?limit=1000").json()["items"]
        if len(records) >= line.attempts:
            break
        assert time.monotonic() < deadline, f"{len(records)} audit records for {line.attempts} attempts"
        time.sleep(0.2)
    assert len(records) == line.attempts
    provisioned = {r["thingName"]: r for r in records if r["outcome"] == "provisioned"}
    assert set(provisioned) == {f"demo-{s}" for s in AT_AWS}
    for serial in AT_AWS:
        assert provisioned[f"demo-{serial}"]["certificateId"] == answers[serial].json()["certificateId"]
    assert len([r for r in records if r["httpStatus"] in (409, 503)]) == len(DURING) + 2

    # Every Idempotency-Key replays what was first answered; those first answered 503 run anew.
    for serial in AT_AWS:
        replay = line.provision(serial)
        assert replay.status_code == 201 and replay.headers.get("Idempotent-Replayed") == "true", replay.text
        assert replay.json() == answers[serial].json()
    for serial in DURING:
        assert line.provision(serial).status_code == 201
    # A new request for a provisioned device is refused, naming its thing.
    again = line.provision(AT_AWS[0], idempotency_key="another-key")
    assert again.status_code == 409 and again.json()["thingName"] == f"demo-{AT_AWS[0]}", again.text

    # Exactly one thing and one certificate per device.
    things = {t["thingName"]: t for t in emulator.registry.list_things()}
    assert sorted(things) == sorted(f"demo-{s}" for s in DEVICES)
    certificates = [c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]
    assert len(certificates) == len(DEVICES)
    assert all(len(t["principals"]) == 1 for t in things.values())
    entries = {e["value"]: e for e in api.get("/admin/enrollments?template=demo").json()["items"]}
    for serial in DEVICES:
        assert entries[serial]["provisions"] == 1, entries[serial]
        assert entries[serial]["lastCertificateId"] == things[f"demo-{serial}"]["principals"][0]
    key = api.get(f"/admin/keys/{line.token.split('_')[1]}").json()
    assert key["provisions"] == len(DEVICES)


def test_postgresql_stopped_while_requests_are_at_aws(
    start_service: Any, emulator: Any, own_postgres: PostgresServer, tmp_path: Path, caplog: Any
) -> None:
    api = start_service(
        PROVISIONER_DATABASE_URL=own_postgres.create_database(),
        PROVISIONER_DATA_DIR=str(tmp_path / "data"),
        PROVISIONER_POOL_SIZE="8",
    )
    line = Line(api)

    def recover() -> Any:
        time.sleep(1)  # down a while longer: the journal waits
        own_postgres.resume()
        return api

    answers = store_fails_while_at_aws(line, emulator, own_postgres.halt, recover, caplog)
    check_every_device_once(line, emulator, answers)
    journal = next((tmp_path / "data").glob("settlements-*.journal"))
    assert journal.stat().st_size == 0  # everything written, nothing left


def test_sqlite_disk_full_while_requests_are_at_aws_and_a_new_worker_writes_the_journal(
    start_service: Any, emulator: Any, small_disk: Path, caplog: Any
) -> None:
    database = small_disk / "provisioner.db"
    settings = {"PROVISIONER_DATABASE_URL": f"sqlite:///{database}", "PROVISIONER_POOL_SIZE": "8"}
    api = start_service(**settings)
    line = Line(api)
    journal = small_disk / "provisioner.db.settlements"
    assert journal.stat().st_size == 2 * 1024 * 1024  # reserved when the worker started
    filler: list[Path] = []

    def fail() -> None:
        with closing(sqlite3.connect(database)) as db:  # the WAL must grow to write: no frames to reuse
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        filler.append(fill(small_disk))

    def restart() -> Any:
        # This worker stops with the journal unwritten; the disk is freed; a new worker starts
        # on the same store and writes what the old one left.
        api.app.extensions["store"].close()
        api.app.extensions["provisioner"].close()
        assert b"OUT-00" in journal.read_bytes()
        filler[0].unlink()
        return start_service(**settings)

    answers = store_fails_while_at_aws(line, emulator, fail, restart, caplog)
    check_every_device_once(line, emulator, answers)
    assert journal.read_bytes().strip(b"\0") == b""  # written, and zeroed again
