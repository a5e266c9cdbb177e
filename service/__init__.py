"""Provisioning-as-a-service for AWS IoT Core: the Flask application factory.

gunicorn runs `service:create_app()` with gthread workers. Nothing made here owns a thread or a
socket: per-worker resources (`service.process`) are made after the fork. The provisioning flow
(and with it prometheus_client) is imported by `create_app`, not by this package: gunicorn's
master imports the package for its config, and prometheus_client must first be imported after
the master set PROMETHEUS_MULTIPROC_DIR (`service.serving.gunicorn_conf`).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import Flask

from service import logs
from service.callers.settlement import Settler
from service.config import Settings
from service.http import forwarded
from service.process import PerProcess
from service.provisioning.pace import LocalPace, Pace
from service.store import Store, StorePace, journal
from service.store.null import NullStore

if TYPE_CHECKING:
    from service.lifecycle import Lifecycle, OrphanRecorder
    from service.provisioning.flow import Provisioner


def create_app(settings: Settings | None = None, provisioner: Provisioner | None = None) -> Flask:
    settings = settings or Settings.from_env()
    _configure_logging(settings.log_level, settings.log_format)
    if settings.local_mode:
        from service.serving import local_mode

        settings = local_mode.prepare(settings)

    from service import lifecycle
    from service.callers import presented
    from service.provisioning.flow import Provisioner
    from service.provisioning.use_case import Provisioning

    app = Flask(__name__)
    if settings.behind_proxy:
        # One hop: the address nginx put in X-Forwarded-For (its peer), never one a client sent
        # (nginx replaces theirs); request.remote_addr is then the caller's, for the audit trail.
        app.wsgi_app = forwarded.one_hop(app.wsgi_app)  # type: ignore[method-assign]
    elif settings.proxy_socket is not None:
        app.wsgi_app = forwarded.FromTlsFront(app.wsgi_app, settings)  # type: ignore[method-assign]
    # One byte above the limit, so that reading that byte means too large (http.body).
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["settings"] = settings
    store_url = settings.store_url
    store: PerProcess[Store]
    settler: PerProcess[Settler]
    if store_url is None:
        # PROVISIONER_DATABASE_URL=off, decided here once: the null store keeps nothing, so a
        # settlement has nothing to be written to and no journal to wait in.
        store = PerProcess(NullStore)
        settler = PerProcess(lambda: Settler(store.get, None))
    else:
        store = PerProcess(lambda: _open_store(store_url, settler))
        settler = PerProcess(lambda: _settler(settings, store_url, store))
    app.extensions["store"] = store
    # After birth (docs/lifecycle.md): the control plane, and the orphans the flows report.
    managed, control_plane = lifecycle.for_app(settings, store.get)
    flow = PerProcess(
        lambda: Provisioner(settings, pace=_aws_pace(settings, store), unsent=_orphans(settings, managed)),
        provisioner,
    )
    app.extensions["provisioner"] = flow
    # The provision use case: what every front door calls.
    app.extensions["provisioning"] = Provisioning(
        settings, store=store.get, settler=settler.get, provisioner=flow.get
    )
    # Devices that present a certificate (docs/attestation.md): both front doors ask this.
    app.extensions[presented.EXTENSION] = presented.DeviceCallers(settings, store.get)

    from service import est
    from service.http import (
        admin,
        admin_device_cas,
        admin_lifecycle,
        caller,
        health,
        metrics,
        problems,
        provision,
        request_log,
    )
    from service.ui import blueprint as ui_blueprint

    request_log.init_app(app)
    problems.init_app(app)
    app.register_blueprint(provision.blueprint)
    app.register_blueprint(health.blueprint)
    app.register_blueprint(metrics.blueprint)
    app.register_blueprint(admin.blueprint)
    app.register_blueprint(admin_device_cas.blueprint)
    admin_lifecycle.init_app(app, managed, control_plane)
    app.register_blueprint(caller.blueprint)
    app.register_blueprint(ui_blueprint)
    est.init_app(app, settings)
    return app


def _open_store(url: str, settler: PerProcess[Settler]) -> Store:
    """This worker's store, at its schema head; then what an earlier worker journaled is written,
    and keys whose stored rules RE2 cannot run are named."""
    from service.callers.keys import unusable_rules

    store = Store.open(url)
    for key_id, parameter, why in unusable_rules(store, datetime.now(UTC)):
        logging.getLogger("service.store").warning(
            "API key %s: its rule for parameter '%s' cannot be used (%s); the key refuses every "
            "provision until an admin replaces it",
            key_id,
            parameter,
            why,
        )
    settler.get().start()
    return store


def _settler(settings: Settings, url: str, store: PerProcess[Store]) -> Settler:
    """Writes each attempt's settlement, or journals it while the store is unavailable."""
    path, reserve = journal.path_for(url, settings.data_dir)
    kept: journal.Journal | None
    try:
        kept = journal.Journal(path, reserve=reserve)
    except OSError as error:
        logging.getLogger("service.store").error(
            "settlement journal %s cannot be used (%s): outcomes the store cannot take are kept in memory",
            path,
            error,
        )
        kept = None
    return Settler(store.get, kept)


def _orphans(settings: Settings, managed: Lifecycle) -> OrphanRecorder:
    """Where this worker's flows report the certificates nobody got; its sweeper starts here
    (after the fork, with the provisioner) and stops with it."""
    from service.lifecycle import OrphanRecorder

    recorder = OrphanRecorder(managed)
    if settings.store_url is not None:
        recorder.start_sweeper()
    return recorder


def _aws_pace(settings: Settings, store: PerProcess[Store]) -> Pace | None:
    """PROVISIONER_AWS_MAX_RATE for every worker and host through the store, else per process."""
    rate = settings.aws_max_rate
    if rate is None:
        return None
    if settings.store_url is None:
        return LocalPace(rate)
    return StorePace(lambda: store.get().pace, rate)


def _configure_logging(level: str, log_format: str) -> None:
    logger = logging.getLogger("service")
    logger.setLevel(level)
    # Under gunicorn nothing is configured: log to stderr. Where the host configured logging
    # (pytest, an embedding app) leave it alone.
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logs.formatter(log_format))
        handler.addFilter(logs.ContextFilter())
        logger.addHandler(handler)
