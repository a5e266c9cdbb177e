"""What a view needs from the app: settings, the provision use case, and this worker's provisioner
and store."""

from __future__ import annotations

from flask import current_app

from service.callers.presented import EXTENSION, DeviceCallers
from service.config import Settings
from service.errors import NotFound
from service.process import PerProcess
from service.provisioning.flow import Provisioner
from service.provisioning.use_case import Provisioning
from service.store import Store


def settings() -> Settings:
    value: Settings = current_app.extensions["settings"]
    return value


def provisioning() -> Provisioning:
    """The provision use case every door calls (service.provisioning.use_case)."""
    value: Provisioning = current_app.extensions["provisioning"]
    return value


def provisioner() -> Provisioner:
    holder: PerProcess[Provisioner] = current_app.extensions["provisioner"]
    return holder.get()


def store() -> Store:
    """This worker's store: the null store (service.store.null) when the service keeps none."""
    holder: PerProcess[Store] = current_app.extensions["store"]
    return holder.get()


def kept_store(unavailable: str) -> Store:
    """This worker's store, for what needs records kept: 404 saying `unavailable` without one."""
    found = store()
    if found.off:
        raise NotFound(unavailable)
    return found


def device_callers() -> DeviceCallers:
    """The presented client certificate and the device caller it proves (service.callers.presented)."""
    value: DeviceCallers = current_app.extensions[EXTENSION]
    return value
