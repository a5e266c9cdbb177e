"""GET /readyz also answers for the store: reachable and at this code's schema head."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

from emulator import Emulator
from service.store.engine import head_revision


def test_an_admin_sees_the_store_in_the_readiness_detail(emulator: Emulator, start_service: Any) -> None:
    api = start_service()
    detail = api.get("/readyz").json()
    assert detail["ready"] is True
    assert detail["store"] == {"ready": True, "backend": "sqlite", "schema": head_revision()}
    assert api.get("/readyz", key=None).json() == {"ready": True}


def test_a_store_behind_the_schema_head_is_not_ready(
    emulator: Emulator, start_service: Any, tmp_path: Path
) -> None:
    api = start_service()
    api.wait_ready()
    with sqlite3.connect(tmp_path / "provisioner.db") as db:  # as if an older release ran
        db.execute("UPDATE alembic_version SET version_num = '0001'")
    response = api.get("/readyz")
    assert response.status_code == 503
    assert response.json()["store"] == {"ready": False, "backend": "sqlite", "schema": "0001"}
    assert api.get("/readyz", key=None).json() == {"ready": False}


def test_an_unreachable_store_is_not_ready(emulator: Emulator, serve: Any, settings_for: Any) -> None:
    # Nothing listens on port 1: the database cannot be reached.
    settings = settings_for(emulator, PROVISIONER_DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none")
    api = serve(settings)
    provisioner = api.app.extensions["provisioner"].get()
    deadline = time.monotonic() + 15
    while not provisioner.readiness()["ready"]:  # the pool is ready; the store is not
        assert time.monotonic() < deadline
        time.sleep(0.05)
    response = api.get("/readyz", key=None)
    assert response.status_code == 503 and response.json() == {"ready": False}
