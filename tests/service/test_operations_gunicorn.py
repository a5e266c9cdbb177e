"""Operations under gunicorn as production runs it: /metrics sums every worker, a dead worker's
live gauges go with it, and PROVISIONER_LOG_FORMAT=json writes one JSON object per line."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from scraped import Scrape, delta
from served import API_KEY, emulator_env, free_port, start_gunicorn, stop, wait_ready

from emulator import Emulator

AUTH = {"Authorization": f"Bearer {API_KEY}"}
POOL_SIZE = 2


def get_metrics(base: str) -> Scrape:
    response = requests.get(base + "/metrics", headers=AUTH, timeout=10)
    assert response.status_code == 200
    return Scrape(response.text)


def both_workers(base: str, timeout: float = 30) -> tuple[set[int], int]:
    """The pids of both workers, asking until each has answered (the second may still be starting
    on a busy machine, or the kernel may hand every connection to one); and how many asks it took."""
    deadline, pids, asked = time.monotonic() + timeout, set[int](), 0
    while len(pids) < 2:
        assert time.monotonic() < deadline, f"only workers {pids} answered"
        pids |= worker_pids(base, probes=10)
        asked += 10
    return pids, asked


def worker_pids(base: str, probes: int = 40) -> set[int]:
    """Pids of the workers that answered /readyz (each connection's client ID names its pid)."""
    pids = set()
    for _ in range(probes):
        detail = requests.get(base + "/readyz", headers=AUTH, timeout=10).json()
        pids |= {int(c["clientId"].split("-")[-3]) for c in detail.get("connections", [])}
    return pids


@pytest.fixture
def served(emulator: Emulator, tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    port = free_port()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_99999.db").write_bytes(b"stale")  # left by an earlier run
    env = emulator_env(
        emulator,
        PROVISIONER_BIND=f"127.0.0.1:{port}",
        PROVISIONER_WORKERS="2",
        PROVISIONER_POOL_SIZE=str(POOL_SIZE),
        PROVISIONER_METRICS_DIR=str(metrics_dir),
        PROVISIONER_LOG_FORMAT="json",
    )
    log = tmp_path / "stderr.log"
    process = start_gunicorn(env, log)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        yield base, log, metrics_dir
    finally:
        assert stop(process) == 0


def test_metrics_from_several_workers_are_summed(served: tuple[str, Path, Path]) -> None:
    base, _, metrics_dir = served
    assert not (metrics_dir / "counter_99999.db").exists(), "the directory was not emptied at start"
    before = get_metrics(base)
    pids, asked = both_workers(base)
    assert len(pids) == 2, f"both workers should have answered, got {pids}"
    serials = [f"SN-W{n}" for n in range(12)]
    for serial in serials:  # a new connection each: gunicorn spreads them over its workers
        body = {"templateName": "demo", "parameters": {"SerialNumber": serial}}
        assert requests.post(base + "/provision", json=body, headers=AUTH, timeout=30).status_code == 201
    # Whichever worker answers, it reports every worker's counts.
    for _ in range(4):
        after = get_metrics(base)
        assert delta(before, after, "provisioner_provisions_total", outcome="provisioned") == 12
        readyz = delta(before, after, "http_server_request_duration_seconds_count", http_route="/readyz")
        assert readyz == asked
    assert after.value("provisioner_pool_connections", state="ready") == 2 * POOL_SIZE
    assert after.value("provisioner_pool_connections", state="busy") == 0


def test_a_dead_workers_live_gauges_are_dropped(served: tuple[str, Path, Path]) -> None:
    base, _, _ = served
    pids, _ = both_workers(base)
    assert len(pids) == 2
    victim = min(pids)
    os.kill(victim, signal.SIGKILL)  # gunicorn's child_exit runs, a new worker is forked
    deadline = time.monotonic() + 30
    while True:
        now = worker_pids(base, probes=10)
        ready = get_metrics(base).value("provisioner_pool_connections", state="ready")
        if victim not in now and len(now) == 2 and ready == 2 * POOL_SIZE:
            break
        assert time.monotonic() < deadline, f"pids {now}, ready connections {ready}"
        time.sleep(0.2)
    # Counted once more would be 3 workers' worth: the dead one's live gauge is gone.
    time.sleep(0.5)
    assert get_metrics(base).value("provisioner_pool_connections", state="ready") == 2 * POOL_SIZE


def test_json_logs_carry_the_request_context_and_no_secret(served: tuple[str, Path, Path]) -> None:
    base, log, _ = served
    body = {"templateName": "demo", "parameters": {"SerialNumber": "SN-J1"}}
    headers = {**AUTH, "X-Request-Id": "factory-7.line-3"}
    response = requests.post(base + "/provision", json=body, headers=headers, timeout=30)
    assert response.status_code == 201
    refused = requests.post(
        base + "/provision", json={**body, "templateName": "nope"}, headers=AUTH, timeout=30
    )
    assert refused.status_code == 404
    time.sleep(0.5)
    text = log.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    assert lines and all({"timestamp", "level", "logger", "message"} <= set(line) for line in lines)
    ours = [line for line in lines if line.get("request_id") == "factory-7.line-3"]
    audit = next(line for line in ours if line["logger"] == "service.audit")
    assert audit["key_id"] == "bootstrap-1" and audit["template"] == "demo"
    assert audit["outcome"] == "provisioned" and audit["status"] == 201 and audit["duration_ms"] > 0
    access = next(line for line in ours if line["logger"] == "service.access")
    assert access["status"] == 201 and access["flow"] == "server-key"
    failed = next(
        line for line in lines if line["logger"] == "service.audit" and line.get("template") == "nope"
    )
    assert failed["outcome"] == "refused" and failed["step"] == "register"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", audit["timestamp"])
    # Never a key, a private key or an ownership token.
    assert API_KEY not in text
    assert "PRIVATE KEY" not in text
    assert response.json()["privateKey"].splitlines()[1] not in text
