"""Provisioning-as-a-service for AWS IoT Core: the Flask application factory.

gunicorn runs `service:create_app()` with gthread workers. Nothing made here owns a thread or a
socket: per-worker resources (`service.process`) are made after the fork.
"""

from __future__ import annotations

import logging

from flask import Flask

from service.config import Settings
from service.process import PerProcess
from service.provisioning.flow import Provisioner
from service.store import Store


def create_app(settings: Settings | None = None, provisioner: Provisioner | None = None) -> Flask:
    settings = settings or Settings.from_env()
    _configure_logging(settings.log_level)
    if settings.local_mode:
        from service import local_mode

        settings = local_mode.prepare(settings)

    app = Flask(__name__)
    # One byte above the limit, so that reading that byte means too large (http.body).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["settings"] = settings
    app.extensions["provisioner"] = PerProcess(lambda: Provisioner(settings), provisioner)
    store_url = settings.store_url
    app.extensions["store"] = PerProcess(lambda: Store.open(store_url)) if store_url else None

    from service.http import admin, caller, health, problems, provision, request_log
    from service.ui import blueprint as ui_blueprint

    request_log.init_app(app)
    problems.init_app(app)
    app.register_blueprint(provision.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(caller.blueprint)
    app.register_blueprint(ui_blueprint)
    return app


def _configure_logging(level: str) -> None:
    logger = logging.getLogger("service")
    logger.setLevel(level)
    # Under gunicorn nothing is configured: log to stderr. Where the host configured logging
    # (pytest, an embedding app) leave it alone.
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger.addHandler(handler)
