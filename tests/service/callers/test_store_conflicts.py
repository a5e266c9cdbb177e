"""A request whose checks' transaction PostgreSQL undoes to break a deadlock runs it again, on a real
PostgreSQL with a real second party holding the locks the other way round."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import sqlalchemy as sa
from device_keys import make_csr
from http_checks import provision_serial

from emulator import Emulator
from service.errors import StoreConflict
from service.provisioning.use_case import Provisioning


def _locks_waited_for(engine: sa.Engine) -> int:
    with engine.connect() as watcher:
        query = (
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return int(watcher.execute(sa.text(query)).scalar_one())


def _wait_until_someone_waits(engine: sa.Engine, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while _locks_waited_for(engine) == 0:
        assert time.monotonic() < deadline, "the request never waited for the other party's lock"
        time.sleep(0.02)


def test_a_request_undone_to_break_a_deadlock_runs_again_and_provisions(
    emulator: Emulator, start_service: Any, postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    undone: list[StoreConflict] = []
    admit = Provisioning._admit

    def counted_admit(self: Provisioning, *args: Any) -> Any:
        try:
            return admit(self, *args)
        except StoreConflict as conflict:
            undone.append(conflict)
            raise

    monkeypatch.setattr(Provisioning, "_admit", counted_admit)
    api = start_service(emulator=emulator, PROVISIONER_DATABASE_URL=postgres_url)
    issued = api.post("/admin/keys", json={"maxProvisions": 10, "ratePerMinute": 100})
    assert issued.status_code == 201, issued.text
    key, key_id = issued.json()["apiKey"], issued.json()["key"]["keyId"]

    def provision(serial: str) -> Any:
        return provision_serial(api, serial, make_csr()[1], key=key)

    left = 60 - time.time() % 60
    if left < 15:  # the whole test in one minute window: the request counts in the row made below
        time.sleep(left + 0.1)
    assert provision("FIRST").status_code == 201  # the key's rate window row of this minute exists

    engine = sa.create_engine(postgres_url)
    try:
        with engine.connect() as other, ThreadPoolExecutor(1) as pool:
            # The other party never looks for deadlocks itself: the request's backend finds this
            # one (after PostgreSQL's deadlock_timeout, 1 s) and its transaction is undone.
            other.execute(sa.text("SET deadlock_timeout = '30s'"))
            other.execute(sa.text("SELECT 1 FROM api_keys WHERE key_id = :key FOR UPDATE"), {"key": key_id})
            # The request counts itself in the rate window (holding that row), then waits for the
            # key's row to take a unit of its quota ...
            running = pool.submit(provision, "AGAIN")
            _wait_until_someone_waits(engine)
            # ... while the other party, holding the key's row, waits for the window's row.
            other.execute(
                sa.text("UPDATE rate_windows SET requests = requests WHERE key_id = :key"), {"key": key_id}
            )
            other.commit()
            answered = running.result(timeout=60)
    finally:
        engine.dispose()

    assert len(undone) == 1  # the deadlock happened, and PostgreSQL undid the request's checks once
    assert answered.status_code == 201, answered.text
    assert answered.json()["thingName"] == "demo-AGAIN"
    assert emulator.registry.describe_thing("demo-AGAIN") is not None
    # Counted once: the undone attempt left nothing (2 provisions of the quota used, not 3).
    keys = api.get("/admin/keys").json()["items"]
    assert [k["provisions"] for k in keys if k["keyId"] == key_id] == [2]
