"""Helpers for tests of the service's store: work run by several threads at once, as several workers
or hosts would, and an audit record to settle with."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from service.callers import settlement
from service.store import Registration


def in_threads(count: int, work: Callable[[int], Any]) -> list[Any]:
    """work(0) .. work(count - 1), each in a thread of its own, all released at once; what each
    returned, or the exception it raised."""
    results: list[Any] = [None] * count
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait(10)
        try:
            results[index] = work(index)
        except Exception as error:  # noqa: BLE001 - the outcome is what the test looks at
            results[index] = error

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def provisioned_record(at: datetime) -> Registration:
    """The audit record of a provision (request "r", 201) at `at`, with an attempt of its own."""
    return Registration(
        at=at,
        request_id="r",
        outcome="provisioned",
        http_status=201,
        duration_ms=1.0,
        attempt_id=settlement.new_attempt_id(),
    )
