"""Two separate gunicorn masters (2 workers each) sharing one real PostgreSQL keep every limit and
idempotency rule: as two hosts behind a load balancer would."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from device_keys import make_csr
from served import API_KEY, emulator_env, free_port, start_gunicorn, stop, wait_ready

from emulator import Emulator, Fault


@pytest.fixture
def masters(emulator: Emulator, postgres_url: str, tmp_path: Path) -> Iterator[list[str]]:
    processes, bases = [], []
    for index in range(2):
        port = free_port()
        env = emulator_env(
            emulator,
            PROVISIONER_BIND=f"127.0.0.1:{port}",
            PROVISIONER_WORKERS="2",
            PROVISIONER_POOL_SIZE="3",
            PROVISIONER_DATABASE_URL=postgres_url,
        )
        processes.append(start_gunicorn(env, tmp_path / f"master-{index}.log"))
        bases.append(f"http://127.0.0.1:{port}")
    try:
        for base, process in zip(bases, processes, strict=True):
            wait_ready(base, process)
        yield bases
    finally:
        for process in processes:
            stop(process)


def call(
    base: str, key: str, serial: str, *, headers: dict[str, str] | None = None, csr: str | None = None
) -> requests.Response:
    body: dict[str, Any] = {"templateName": "demo", "parameters": {"SerialNumber": serial}}
    if csr:
        body["csr"] = csr
    return requests.post(
        base + "/provision",
        json=body,
        timeout=30,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )


def admin(base: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(base + path, timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}, **kwargs)


def in_parallel(count: int, work: Any) -> list[requests.Response]:
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(work, range(count)))


def test_two_masters_on_one_postgresql_keep_every_limit(masters: list[str], emulator: Emulator) -> None:
    a, b = masters
    quota_key = admin(a, "/admin/keys", json={"maxProvisions": 6}).json()["apiKey"]
    outcomes = in_parallel(12, lambda i: call(masters[i % 2], quota_key, f"Q-{i}"))
    assert sorted(r.status_code for r in outcomes) == [201] * 6 + [403] * 6
    assert {r.json()["rule"] for r in outcomes if r.status_code == 403} == {"quota-exhausted"}

    left = 60 - time.time() % 60
    if left < 10:  # one minute window for the whole burst
        time.sleep(left + 0.1)
    rate_key = admin(b, "/admin/keys", json={"ratePerMinute": 5}).json()["apiKey"]
    outcomes = in_parallel(10, lambda i: call(masters[i % 2], rate_key, f"R-{i}"))
    assert sorted(r.status_code for r in outcomes) == [201] * 5 + [429] * 5
    assert all("Retry-After" in r.headers for r in outcomes if r.status_code == 429)

    assert admin(a, "/admin/enrollments", json={"template": "demo", "value": "ONCE-1"}).status_code == 201
    emulator.set_fault("register_thing", Fault(latency=(0.2, 0.2)))
    outcomes = in_parallel(6, lambda i: call(masters[i % 2], API_KEY, "ONCE-1", csr=make_csr()[1]))
    assert sorted(r.status_code for r in outcomes) == [201] + [409] * 5

    _, csr = make_csr()
    retry = {"Idempotency-Key": "line-4/device-77"}
    outcomes = in_parallel(6, lambda i: call(masters[i % 2], API_KEY, "IDEM-1", headers=retry, csr=csr))
    fresh = [r for r in outcomes if r.status_code == 201 and "Idempotent-Replayed" not in r.headers]
    assert len(fresh) == 1 and all(r.status_code in (201, 409) for r in outcomes)
    replay = call(b, API_KEY, "IDEM-1", headers=retry, csr=csr)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.json()["certificateId"] == fresh[0].json()["certificateId"]

    things = [t["thingName"] for t in emulator.registry.list_things()]
    assert len([t for t in things if t.startswith("demo-Q-")]) == 6
    assert things.count("demo-ONCE-1") == 1 and things.count("demo-IDEM-1") == 1
    records = requests.get(
        a + "/admin/registrations?limit=1000", timeout=30, headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()["items"]
    assert len(records) == 12 + 10 + 6 + 6 + 1
