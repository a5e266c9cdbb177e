"""What a view needs from the app: the settings and this worker's provisioner."""

from __future__ import annotations

from flask import current_app

from service.config import Settings
from service.process import ProvisionerHolder
from service.provisioning.flow import Provisioner


def settings() -> Settings:
    value: Settings = current_app.extensions["settings"]
    return value


def provisioner() -> Provisioner:
    holder: ProvisionerHolder = current_app.extensions["provisioner"]
    return holder.get()
