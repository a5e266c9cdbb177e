"""The account-wide pace of calls to AWS IoT (PROVISIONER_AWS_MAX_RATE): slots one interval apart.

Virtual scheduling (the GCRA): the pace remembers `next_at`, the earliest free slot. A provision
takes the slot `max(next_at, earliest)` and moves `next_at` one interval past it, unless that
slot is later than `latest`, in which case nothing changes and it is refused. Each taker then
sleeps until its own slot, so the calls leave at most `rate` per second, evenly spaced, with no
burst. Times are wall-clock seconds (time.time()), so that hosts sharing a store agree on them
as far as their clocks do (NTP keeps that within milliseconds).

`StorePace` (service.store.pace) keeps `next_at` in the shared store, one atomic statement per
reservation, for every worker and host; `LocalPace` keeps it in this process, for a service
without a store (each process then paces on its own: N workers allow N times the rate).
"""

from __future__ import annotations

import threading
from typing import Protocol


class Pace(Protocol):
    def reserve(self, earliest: float, latest: float) -> tuple[bool, float]:
        """(True, slot) with earliest <= slot <= latest, taken; or (False, the first free slot)."""
        ...


class LocalPace:
    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self._next_at = 0.0
        self._lock = threading.Lock()

    def reserve(self, earliest: float, latest: float) -> tuple[bool, float]:
        with self._lock:
            slot = max(self._next_at, earliest)
            if slot > latest:
                return False, slot
            self._next_at = slot + self.interval
            return True, slot
