"""The whole contract fuzzed (schemathesis): every operation in openapi.yaml, admin ones included,
called over real HTTP on the real app (a SQLite store, the real emulator behind it) with data the
contract allows and data it forbids. No answer may be a 5xx the contract does not promise for that
case, nor break the contract (status, headers, content type, body)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from werkzeug.serving import make_server

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator
from service import create_app
from service.config import Settings

CONTRACT = Path(__file__).resolve().parents[3] / "openapi.yaml"
ADMIN_KEY = "fuzz-admin-key-0123456789abcdef"
# Per operation and generation mode: enough to meet every field's edges, little enough that the
# whole contract runs in well under a minute on two cores.
EXAMPLES = 30

# The admin key through the contract's own security scheme: schemathesis then knows it, and its
# requests without a key (or with a broken one) stay without it. A request the contract forbids
# must be refused with one of the 4xx the contract names for refusals (413: a body over the limit).
REFUSALS = [400, 401, 403, 404, 405, 409, 413, 415, 422, 429]
schema = schemathesis.openapi.from_path(
    CONTRACT,
    config=SchemathesisConfig.from_dict(
        {
            "auth": {"openapi": {"apiKey": {"bearer": ADMIN_KEY}}},
            "checks": {"negative_data_rejection": {"expected-statuses": REFUSALS}},
        }
    ),
)
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(scope="module")
def base_url(shared_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz")
    settings_ = Settings.from_env(
        {
            "PROVISIONER_IOT_ENDPOINT": shared_emulator.urls["wss"],
            "PROVISIONER_AUTH_MODE": "sigv4",
            "PROVISIONER_AWS_REGION": "us-east-1",
            "PROVISIONER_CA_FILE": str(shared_emulator.ca_path),
            "PROVISIONER_API_KEYS": ADMIN_KEY,
            "PROVISIONER_POOL_SIZE": "2",
            "PROVISIONER_DATABASE_URL": f"sqlite:///{data / 'provisioner.db'}",
            # The lifecycle operations call the emulator's control plane (with its test pair).
            "PROVISIONER_CONTROL_ENDPOINT": shared_emulator.urls["control"],
        }
    ).replace(static_credentials=(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY))
    app = create_app(settings_)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    try:
        deadline = time.monotonic() + 15  # ready first: a 503 from /readyz would count as a server error
        while requests.get(base + "/readyz", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the service did not get ready"
            time.sleep(0.05)
        yield base
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        app.extensions["provisioner"].close()
        app.extensions["store"].close()


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_keeps_the_contract(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)
