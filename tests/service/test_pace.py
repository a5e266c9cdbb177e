"""PROVISIONER_AWS_MAX_RATE: slots one interval apart, shared through the store by every host.

Two `Store` objects on one database stand for two hosts; the service tests run the real app.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from http_checks import TWO_SECOND_DEADLINE, provision_serial
from scraped import delta, scrape

from emulator import Emulator
from service.provisioning.pace import LocalPace
from service.store import Store, StorePace


def test_two_hosts_share_one_pace(database_url: str) -> None:
    host_a, host_b = Store.open(database_url), Store.open(database_url)
    try:
        pace_a = StorePace(lambda: host_a.pace, rate=10)
        pace_b = StorePace(lambda: host_b.pace, rate=10)
        now = time.time()
        taken = [
            pace_a.reserve(now, now + 0.25),
            pace_b.reserve(now, now + 0.25),
            pace_a.reserve(now, now + 0.25),
        ]
        assert [granted for granted, _ in taken] == [True, True, True]
        slots = [slot for _, slot in taken]
        assert slots[0] == now and abs(slots[1] - (now + 0.1)) < 1e-6 and abs(slots[2] - (now + 0.2)) < 1e-6
        # The next slot (now + 0.3) is past the deadline: refused, and the pace is unchanged.
        granted, first_free = pace_b.reserve(now, now + 0.25)
        assert not granted and abs(first_free - (now + 0.3)) < 1e-6
        granted, slot = pace_a.reserve(now, now + 1)
        assert granted and abs(slot - (now + 0.3)) < 1e-6
        # Later than the pace's next slot, a request takes its own earliest time.
        granted, slot = pace_b.reserve(now + 5, now + 6)
        assert granted and slot == now + 5
    finally:
        host_a.close()
        host_b.close()


def test_concurrent_reservations_from_two_hosts_never_share_a_slot(database_url: str) -> None:
    host_a, host_b = Store.open(database_url), Store.open(database_url)
    try:
        paces = [StorePace(lambda: host_a.pace, rate=100), StorePace(lambda: host_b.pace, rate=100)]
        now = time.time()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda n: paces[n % 2].reserve(now, now + 10), range(60)))
        assert all(granted for granted, _ in results)
        slots = sorted(slot for _, slot in results)
        gaps = [b - a for a, b in zip(slots, slots[1:], strict=False)]
        assert min(gaps) > 0.01 - 1e-6 and slots[-1] - slots[0] < 0.6
    finally:
        host_a.close()
        host_b.close()


def test_the_local_pace_spaces_slots_in_one_process() -> None:
    pace = LocalPace(rate=4)
    slots = [pace.reserve(100.0, 101.0) for _ in range(6)]
    assert [g for g, _ in slots] == [True] * 5 + [False]
    assert [s for _, s in slots] == [100.0, 100.25, 100.5, 100.75, 101.0, 101.25]


def test_the_service_waits_for_slots_and_refuses_past_the_deadline(
    emulator: Emulator, start_service: Any
) -> None:
    # 2 provisions a second; a 2 s deadline keeps 0.5 s for the flow: slots at 0, 0.5, 1.0 and
    # 1.5 s fit, a fifth request's (2.0 s) does not.
    api = start_service(PROVISIONER_AWS_MAX_RATE="2", PROVISIONER_POOL_SIZE="4", **TWO_SECOND_DEADLINE)
    before = scrape(api.get)
    started = time.monotonic()
    with ThreadPoolExecutor(5) as pool:
        responses = list(pool.map(lambda n: provision_serial(api, f"SN-P{n}"), range(5)))
    elapsed = time.monotonic() - started
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201, 201, 201, 201, 429], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["type"].endswith("/aws-pace") and int(refused.headers["Retry-After"]) >= 1
    assert elapsed >= 1.5  # the fourth waited for its slot
    after = scrape(api.get)
    assert delta(before, after, "provisioner_aws_pace_wait_seconds_count") == 4
    assert delta(before, after, "provisioner_rate_limit_refusals_total", limit="aws-pace") == 1
    assert delta(before, after, "provisioner_provisions_total", outcome="provisioned") == 4
