"""What every command works with: the settings, read once, and the store, opened on first use."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from service.config import Settings, SettingsError
from service.store import Store

if TYPE_CHECKING:
    from service.aws import ControlPlaneHolder
    from service.lifecycle import Lifecycle


class Runtime:
    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._store: Store | None = None
        self._control: ControlPlaneHolder | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_env()
        return self._settings

    def store(self, *, upgrade: bool = True) -> Store:
        """The server's store; migrated to the current schema unless `upgrade` is False."""
        if self._store is None:
            url = self.settings.store_url
            if url is None:
                raise SettingsError(
                    [
                        "PROVISIONER_DATABASE_URL=off: this service runs without a store, so there "
                        "are no keys, enrollments or audit records to manage"
                    ]
                )
            self._store = Store.open(url, upgrade=upgrade)
        return self._store

    def lifecycle(self) -> Lifecycle:
        """Lifecycle actions on the server's store and AWS IoT's control plane (in local mode, the
        running emulator's: the commands never start one)."""
        from service.aws import ControlPlaneHolder, target_of
        from service.lifecycle import Lifecycle
        from service.serving import local_mode

        settings = local_mode.with_running_emulator(self.settings)
        if self._control is None:
            self._control = ControlPlaneHolder(target_of(settings))
        holder = self._control
        return Lifecycle(settings, store=self.store, control=holder.get)

    def close(self) -> None:
        if self._control is not None:
            self._control.close()
            self._control = None
        if self._store is not None:
            self._store.close()
            self._store = None


def now() -> datetime:
    return datetime.now(UTC)


pass_runtime = click.make_pass_decorator(Runtime, ensure=True)
