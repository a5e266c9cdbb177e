"""Provisioning-as-a-service for AWS IoT Core: the Flask application factory.

gunicorn runs `service:create_app()` with gthread workers. Nothing here owns a thread or a socket
until a worker serves its first request: the provisioner (the MQTT pool) is made lazily, once
per process, so a fork never inherits live connections.
"""

from __future__ import annotations

import logging
import os
import threading

from flask import Flask, current_app

from service.errors import BrokerUnavailable
from service.provisioner import Provisioner
from service.settings import Settings


def create_app(settings: Settings | None = None, provisioner: Provisioner | None = None) -> Flask:
    settings = settings or Settings.from_env()
    _configure_logging(settings.log_level)
    if settings.iot_endpoint is None:
        settings = _start_local_mode(settings)

    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1  # see api._read_json_object
    app.extensions["settings"] = settings
    app.extensions["provisioner"] = ProvisionerHolder(settings, provisioner)

    from service import api  # imported here: api reads get_settings/get_provisioner from us

    app.register_blueprint(api.blueprint)
    api.register_error_handlers(app)
    return app


def get_settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def get_provisioner() -> Provisioner:
    holder: ProvisionerHolder = current_app.extensions["provisioner"]
    return holder.get()


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
            raise BrokerUnavailable("the service is shutting down", step="connect",
                                    retry_after=5)
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


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("service")
    logger.setLevel(level)
    # Under gunicorn nothing is configured: log to stderr. Where the host configured logging
    # (pytest, an embedding app) leave it alone.
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)


def _start_local_mode(settings: Settings) -> Settings:
    """LOCAL MODE HOOK (no PROVISIONER_IOT_ENDPOINT): start the embedded emulator and return the
    settings that point at it, with an API key generated and printed when none was given
    (`settings.generate_api_key`). Written by the lead in `service/local.py`."""
    from service import local

    prepared: Settings = local.prepare(settings)
    return prepared
