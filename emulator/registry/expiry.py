"""AWS deletes certificates whose ownership token was not redeemed within the hour; so does this
sweep, run on the emulator's event loop while it serves."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from emulator.registry.store import Registry

log = logging.getLogger("emulator")

SWEEP_SECONDS = 60.0  # at most between two sweeps, and at least once per token lifetime


async def sweep(registry: Registry, clock: Callable[[], float]) -> None:
    """Until cancelled: wake when the oldest unredeemed certificate is due (a short token
    lifetime in tests is honoured within a few milliseconds), at most SWEEP_SECONDS apart."""
    while True:
        due = registry.next_expiry()
        wait = min(SWEEP_SECONDS, registry.token_lifetime)
        if due is not None:
            wait = min(wait, due - clock())
        await asyncio.sleep(max(wait, 0.0) + 0.01)
        removed = await asyncio.to_thread(registry.expire_pending)
        if removed:
            log.info("deleted %d unredeemed certificate(s) past the token lifetime", removed)
