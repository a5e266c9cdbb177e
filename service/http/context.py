"""What a view needs from the app: settings, and this worker's provisioner and store."""

from __future__ import annotations

from flask import current_app

from service.callers.settlement import Settler
from service.config import Settings
from service.process import PerProcess
from service.provisioning.flow import Provisioner
from service.store import Store


def settings() -> Settings:
    value: Settings = current_app.extensions["settings"]
    return value


def provisioner() -> Provisioner:
    holder: PerProcess[Provisioner] = current_app.extensions["provisioner"]
    return holder.get()


def store() -> Store:
    """This worker's store: the null store (service.store.null) when the service keeps none."""
    holder: PerProcess[Store] = current_app.extensions["store"]
    return holder.get()


def settler() -> Settler:
    """This worker's settler: it writes each attempt's settlement to the store, or journals it."""
    holder: PerProcess[Settler] = current_app.extensions["settler"]
    return holder.get()
