"""The service app for the operator page's tests and the contract fuzz: in-process (werkzeug,
threaded) on a free loopback port, with its own SQLite store, its MQTT pool on a running emulator
(WSS + SigV4), its lifecycle operations on the emulator's control plane."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from werkzeug.serving import make_server

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator
from service import create_app
from service.config import Settings

ADMIN_KEY = "ui-test-admin-key-0123456789"  # PROVISIONER_API_KEYS: the bootstrap admin key


@dataclass(frozen=True)
class UiService:
    base_url: str
    settings: Settings
    emulator: Emulator
    admin_key: str = ADMIN_KEY

    @property
    def page_url(self) -> str:
        return f"{self.base_url}/ui/"


@contextmanager
def serve_ui(emulator: Emulator, directory: Path, **env: str) -> Iterator[UiService]:
    """The app on `emulator`, its store in `directory` (`env`: more PROVISIONER_* settings);
    yielded once GET /readyz answers 200."""
    settings = Settings.from_env(
        {
            "PROVISIONER_IOT_ENDPOINT": emulator.urls["wss"],
            "PROVISIONER_AUTH_MODE": "sigv4",
            "PROVISIONER_AWS_REGION": "us-east-1",
            "PROVISIONER_CA_FILE": str(emulator.ca_path),
            "PROVISIONER_API_KEYS": ADMIN_KEY,
            "PROVISIONER_DATABASE_URL": f"sqlite:///{directory / 'provisioner.db'}",
            "PROVISIONER_POOL_SIZE": "2",
            "PROVISIONER_RECONNECT_MIN_SECONDS": "0.2",
            "PROVISIONER_RECONNECT_MAX_SECONDS": "1",
            # The lifecycle views: the emulator's control plane over HTTPS; no background sweep.
            "PROVISIONER_CONTROL_ENDPOINT": emulator.urls["control-tls"],
            "PROVISIONER_CONTROL_CA_FILE": str(emulator.ca_path),
            "PROVISIONER_ORPHAN_SWEEP_SECONDS": "0",
            "PROVISIONER_ORPHAN_GRACE_SECONDS": "0",
            **env,
        }
    ).replace(static_credentials=(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY))
    app = create_app(settings)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="ui-test-server", daemon=True
    )
    thread.start()
    try:
        service = UiService(f"http://127.0.0.1:{server.server_port}", settings, emulator)
        _wait_ready(service.base_url)
        yield service
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["provisioner"].close()
        app.extensions["store"].close()
    assert not thread.is_alive(), "the test HTTP server did not stop"


def _wait_ready(base_url: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while requests.get(f"{base_url}/readyz", timeout=5).status_code != 200:
        if time.monotonic() >= deadline:
            raise AssertionError(f"the service was not ready within {timeout:g} s")
        time.sleep(0.05)
