"""Per-worker resources, made after gunicorn's fork: the provisioner (its MQTT pool) and the store.

Nothing here owns a thread or a socket until a worker needs it: each resource is made lazily,
once per process, so a fork never inherits live connections. gunicorn's hooks (`gunicorn_conf`)
make them early (`post_worker_init`) and close them (`worker_exit`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from service.errors import BrokerUnavailable


class Closable(Protocol):
    def close(self) -> None: ...


T = TypeVar("T", bound=Closable)


class PerProcess(Generic[T]):
    """One `T` per process, made on first use by `make` (or the one given, owned by the giver)."""

    def __init__(self, make: Callable[[], T], given: T | None = None) -> None:
        self._make = make
        self._given = given
        self._made: tuple[int, T] | None = None  # (pid that made it, the resource)
        # Only held while a resource is built, which never happens in gunicorn's master, so a
        # fork cannot copy it locked.
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> T:
        if self._given is not None:
            return self._given
        if self._closed:
            # worker_exit ran: a straggling request must not build a new one during shutdown.
            raise BrokerUnavailable("the service is shutting down", step="connect", retry_after=5)
        made = self._made
        if made is None or made[0] != os.getpid():
            with self._lock:
                made = self._made
                if made is None or made[0] != os.getpid():
                    # One inherited from a parent process has no threads here: replace it.
                    made = (os.getpid(), self._make())
                    self._made = made
        return made[1]

    @property
    def current(self) -> T | None:
        """The resource serving this process, or None while none was needed yet."""
        if self._given is not None:
            return self._given
        made = self._made
        return made[1] if made is not None and made[0] == os.getpid() else None

    def close(self) -> None:
        """Close the resource this process made (one given is its owner's)."""
        self._closed = True
        made, self._made = self._made, None
        if made is not None and made[0] == os.getpid():
            made[1].close()
