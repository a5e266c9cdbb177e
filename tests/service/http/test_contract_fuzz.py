"""The whole contract fuzzed (schemathesis): every operation in openapi.yaml, admin ones included,
called over real HTTP on the real app (a SQLite store, the real emulator behind it) with data the
contract allows and data it forbids. No answer may be a 5xx the contract does not promise for that
case, nor break the contract (status, headers, content type, body)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from repository import CONTRACT_PATH
from schemathesis import checks
from schemathesis.config import SchemathesisConfig
from ui_service import ADMIN_KEY, serve_ui

from emulator import Emulator

# Per operation and generation mode: enough to meet every field's edges, little enough that the
# whole contract runs in well under a minute on two cores.
EXAMPLES = 30

# The admin key through the contract's own security scheme: schemathesis then knows it, and its
# requests without a key (or with a broken one) stay without it. A request the contract forbids
# must be refused with one of the 4xx the contract names for refusals (413: a body over the limit).
REFUSALS = [400, 401, 403, 404, 405, 409, 413, 415, 422, 429]
schema = schemathesis.openapi.from_path(
    CONTRACT_PATH,
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
    # Ready first (serve_ui waits for /readyz): a 503 from /readyz would count as a server error.
    with serve_ui(shared_emulator, tmp_path_factory.mktemp("fuzz")) as service:
        yield service.base_url


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
def test_every_operation_keeps_the_contract(case: schemathesis.Case, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, checks=CHECKS, timeout=30)
