"""Per-worker resources, made after gunicorn's fork: the provisioner (and its MQTT pool).

Nothing here owns a thread or a socket until a worker needs it: the provisioner is made lazily,
once per process, so a fork never inherits live connections. gunicorn's hooks (`gunicorn_conf`)
make it early (`post_worker_init`) and close it (`worker_exit`).
"""

from __future__ import annotations

import os
import threading

from service.config import Settings
from service.errors import BrokerUnavailable
from service.provisioning.flow import Provisioner


class ProvisionerHolder:
    """The provisioner of this process, made on first use (or the one given to `create_app`)."""

    def __init__(self, settings: Settings, provisioner: Provisioner | None = None) -> None:
        self._settings = settings
        self._given = provisioner
        self._made: tuple[int, Provisioner] | None = None  # (pid that made it, provisioner)
        # Only held while a provisioner is built, which never happens in gunicorn's master, so a
        # fork cannot copy it locked.
        self._lock = threading.Lock()
        self._closed = False

    def get(self) -> Provisioner:
        if self._given is not None:
            return self._given
        if self._closed:
            # worker_exit ran: a straggling request must not build a new pool during shutdown.
            raise BrokerUnavailable("the service is shutting down", step="connect", retry_after=5)
        made = self._made
        if made is None or made[0] != os.getpid():
            with self._lock:
                made = self._made
                if made is None or made[0] != os.getpid():
                    # A provisioner inherited from a parent process has no threads here: replace.
                    made = (os.getpid(), Provisioner(self._settings))
                    self._made = made
        return made[1]

    @property
    def current(self) -> Provisioner | None:
        """The provisioner serving this process, or None while none was needed yet."""
        if self._given is not None:
            return self._given
        made = self._made
        return made[1] if made is not None and made[0] == os.getpid() else None

    def close(self) -> None:
        """Close the provisioner this process made (one given to create_app is its owner's)."""
        self._closed = True
        made, self._made = self._made, None
        if made is not None and made[0] == os.getpid():
            made[1].close()
