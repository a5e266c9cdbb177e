"""The service over real HTTP: the app on a loopback socket, and a client held to `openapi.yaml`.

Real parts only: an app either makes its own (real) Provisioner, as in production, or — for the
one condition real parts cannot produce, a bug inside the service — is given a RaisingProvisioner.

Fixtures
    settings_env        dict: the PROVISIONER_* environment of the default test settings
                        (endpoint mqtt://127.0.0.1:1, where nothing listens; TEST_API_KEY)
    make_settings       make_settings(**env) -> Settings.from_env(settings_env | env)
    unreachable_settings  unreachable_settings(**env) -> make_settings with short connect, pool
                        and step waits: a request that reaches the real provisioner fails fast
                        (503, step "connect") instead of waiting out the production defaults
    settings_for        settings_for(emulator, mode="sigv4", **env) -> Settings pointing the real
                        provisioner at that running emulator (wss + SigV4 with the emulator's
                        test credentials, or mqtts + claim certificate for mode="certificate")
    contract            the repository's openapi.yaml as an openapi_core.OpenAPI (session)
    serve               serve(settings=None, provisioner=None) -> ApiClient: create_app(...) on
                        127.0.0.1:<free port> in a thread, stopped at teardown. provisioner=None
                        means the app makes its own (the real Provisioner class), as in production.
    api                 serve(unreachable_settings()): the real app whose broker is not there, for
                        everything answered before the provisioner (auth, media type, size, JSON,
                        rules, routing); its provisioner is made only if a request reaches it
    start_service       start_service(mode="sigv4", *, emulator=None, **env) -> ApiClient: the real
                        stack on `settings_for(emulator, mode, **env)` (default: the shared
                        `emulator` fixture), returned once GET /readyz answers 200
    live_api            start_service(): HTTP -> Flask -> paho pool -> the shared emulator
    make_emulator       make_emulator(**config) -> a started Emulator of its own (EC keys, data in a
                        fresh temporary directory), for a templates directory or other limits
                        than the shared one; stopped after the test's apps
    serve_raising       serve_raising(error) -> ApiClient whose provisioner raises `error` on every
                        provision(): the only stand-in, for bugs (an exception the real parts
                        never raise on purpose); it never returns a result
    csr_pem             a fresh, valid PEM CSR for an EC P-256 key
    contract_check      contract_check(response): raise ContractViolation (an AssertionError)
                        unless the contract allows this response to its request

ApiClient (`api.get(path)`, `api.post(path, json=...)`, `api.request(method, path, ...)`) returns
`requests.Response`s and checks EVERY one against the contract first (status, headers, body). It
sends `Authorization: Bearer <key>` with `api.key` unless told `key=None` or another key.
`api.wait_ready(timeout)` polls GET /readyz until it answers 200 and returns its detail.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
import requests
from device_keys import make_csr
from jsonschema_path import SchemaPath
from openapi_core import Config, OpenAPI
from openapi_core.contrib.requests import RequestsOpenAPIRequest, RequestsOpenAPIResponse
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from openapi_core.validation.schemas import oas31_schema_validators_factory
from openapi_core.validation.schemas.exceptions import ValidateError
from repository import CONTRACT_PATH
from werkzeug.serving import BaseWSGIServer, make_server

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator
from service import create_app
from service.config import Settings
from service.store import Store

TEST_API_KEY = "test-key-0123456789abcdef"
REQUEST_TIMEOUT = 30.0
UNREACHABLE_ENDPOINT = "mqtt://127.0.0.1:1"  # nothing listens on port 1: connections are refused
# Short waits for the real provisioner against the unreachable endpoint: quick failure, and a
# small pool, so that closing it (each link stops a paho loop in reconnect back-off) is quick.
UNREACHABLE_ENV = {
    "PROVISIONER_POOL_SIZE": "2",
    "PROVISIONER_CONNECT_TIMEOUT_SECONDS": "1",
    "PROVISIONER_POOL_WAIT_SECONDS": "0.5",
    "PROVISIONER_STEP_TIMEOUT_SECONDS": "1",
    "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "3",
    "PROVISIONER_RECONNECT_MIN_SECONDS": "0.1",
    "PROVISIONER_RECONNECT_MAX_SECONDS": "0.5",
}


class ContractViolation(AssertionError):
    pass


class RaisingProvisioner:
    """Raises `error` from every provision(), as a bug in the flow would; never returns a result.

    Only for what real parts cannot produce: an exception the service never raises on purpose.
    Everything else (successes, AWS rejections, timeouts, an unreachable broker) is produced by
    the real Provisioner against the real emulator or a closed port.
    """

    def __init__(self, error: Exception) -> None:
        self.error = error

    def provision(self, **request: Any) -> NoReturn:
        raise self.error


def check_against_contract(contract: OpenAPI, response: requests.Response) -> None:
    """Raise ContractViolation unless `response` is one the contract allows for its request."""
    sent = response.request
    if not isinstance(sent.body, bytes | str | None):  # a streamed body is gone once sent
        sent = sent.copy()
        sent.body = None
    request = RequestsOpenAPIRequest(sent)
    errors = list(contract.iter_response_errors(request, RequestsOpenAPIResponse(response)))
    if any(isinstance(e, PathNotFound | OperationNotFound) for e in errors):
        # No operation describes an unknown path or method; the contract's shared responses do.
        errors = _routing_problem_errors(contract, response)
    if errors:
        raise ContractViolation(
            f"{response.request.method} {response.request.path_url} -> {response.status_code} "
            f"breaks openapi.yaml:\n"
            + "\n".join(_describe(e) for e in errors)
            + f"\nheaders: {dict(response.headers)}\nbody: {response.text[:2000]}"
        )


def _routing_problem_errors(contract: OpenAPI, response: requests.Response) -> list[Exception]:
    name = {404: "NotFound", 405: "MethodNotAllowed"}.get(response.status_code)
    if name is None:
        return [ContractViolation(f"an unrouted request must get 404 or 405, got {response.status_code}")]
    definition = contract.spec / "components" / "responses" / name
    errors: list[Exception] = []
    for header, spec in (definition / "headers").items():
        value = response.headers.get(header)
        if value is None:
            if spec.getkey("required", False):
                errors.append(ContractViolation(f"missing required header {header}"))
            continue
        errors += _schema_errors(contract, spec / "schema", value)
    media = definition / "content"
    content_type = response.headers.get("Content-Type", "")
    if content_type not in media:
        return [*errors, ContractViolation(f"content type {content_type!r} is not documented")]
    errors += _schema_errors(contract, media / content_type / "schema", response.json())
    return errors


def _schema_errors(contract: OpenAPI, schema: SchemaPath, value: Any) -> list[Exception]:
    try:
        oas31_schema_validators_factory.create(contract.spec, schema).validate(value)
    except ValidateError as error:
        return [error]
    return []


def _describe(error: BaseException) -> str:
    lines = [f"- {type(error).__name__}: {error}"]
    cause = error.__cause__
    for detail in getattr(cause, "schema_errors", None) or getattr(error, "schema_errors", ()):
        lines.append(f"    {'/'.join(map(str, detail.absolute_path)) or '<body>'}: {detail.message}")
    return "\n".join(lines)


class ApiClient:
    def __init__(
        self, base_url: str, contract: OpenAPI, app: Any, settings: Settings, provisioner: Any
    ) -> None:
        self.base_url = base_url
        self.contract = contract
        self.app = app
        self.settings = settings
        self.provisioner = provisioner
        self.key: str | None = settings.api_keys[0] if settings.api_keys else None
        self.session = requests.Session()

    def request(
        self, method: str, path: str, *, key: str | None | object = ..., **kwargs: Any
    ) -> requests.Response:
        key = self.key if key is ... else key
        headers = dict(kwargs.pop("headers", None) or {})
        if key is not None and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {key}"
        kwargs.setdefault("timeout", REQUEST_TIMEOUT)
        response = self.session.request(method, self.base_url + path, headers=headers, **kwargs)
        check_against_contract(self.contract, response)
        return response

    def check(self, response: requests.Response) -> None:
        check_against_contract(self.contract, response)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def wait_ready(self, timeout: float = 15.0) -> dict[str, Any]:
        """Poll GET /readyz until it answers 200; return its detail (AssertionError on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            response = self.get("/readyz")
            if response.status_code == 200:
                detail: dict[str, Any] = response.json()
                return detail
            if time.monotonic() >= deadline:
                raise AssertionError(f"service not ready within {timeout:g} s: {response.json()}")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def contract() -> OpenAPI:
    # problem+json is JSON: openapi-core only knows application/json out of the box.
    config = Config(extra_media_type_deserializers={"application/problem+json": json_loads})
    return OpenAPI.from_path(CONTRACT_PATH, config=config)


@pytest.fixture
def settings_env(tmp_path: Path) -> dict[str, str]:
    # Each test's own store: an SQLite file in its temporary directory.
    return {
        "PROVISIONER_IOT_ENDPOINT": UNREACHABLE_ENDPOINT,
        "PROVISIONER_API_KEYS": TEST_API_KEY,
        "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp_path / 'provisioner.db'}",
    }


@pytest.fixture
def make_settings(settings_env: dict[str, str]) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        return Settings.from_env({**settings_env, **env})

    return make


@pytest.fixture
def unreachable_settings(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def make(**env: str) -> Settings:
        return make_settings(**{**UNREACHABLE_ENV, **env})

    return make


@pytest.fixture
def settings_for(make_settings: Callable[..., Settings]) -> Callable[..., Settings]:
    def settings_for(emulator: Emulator, mode: str = "sigv4", **env: str) -> Settings:
        if mode == "sigv4":
            base = {"PROVISIONER_IOT_ENDPOINT": emulator.urls["wss"]}
        else:
            base = {
                "PROVISIONER_IOT_ENDPOINT": emulator.urls["mqtts"],
                "PROVISIONER_CLAIM_CERT": str(emulator.claim_cert_path),
                "PROVISIONER_CLAIM_KEY": str(emulator.claim_key_path),
            }
        settings = make_settings(
            **{
                "PROVISIONER_AUTH_MODE": mode,
                "PROVISIONER_AWS_REGION": "us-east-1",
                "PROVISIONER_CA_FILE": str(emulator.ca_path),
                "PROVISIONER_POOL_SIZE": "2",
                "PROVISIONER_RECONNECT_MIN_SECONDS": "0.2",
                "PROVISIONER_RECONNECT_MAX_SECONDS": "1",
                **base,
                **env,
            }
        )
        return settings.replace(static_credentials=(DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY))

    return settings_for


@pytest.fixture
def make_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Emulator]]:
    started: list[Emulator] = []

    def make(**config: Any) -> Emulator:
        config = {"key_algorithm": "ec", "key_pool_size": 1, **config}
        emulator = Emulator(data_dir=tmp_path_factory.mktemp("emulator"), **config).start()
        started.append(emulator)
        return emulator

    yield make
    for emulator in reversed(started):
        emulator.stop()


@pytest.fixture
def serve(
    contract: OpenAPI, make_settings: Callable[..., Settings], make_emulator: Callable[..., Emulator]
) -> Iterator[Callable[..., ApiClient]]:
    # Depending on make_emulator makes the apps (and their MQTT pools) stop before any emulator
    # a test made, so no pool is left reconnecting to a closed port while it shuts down.
    started: list[tuple[BaseWSGIServer, threading.Thread, ApiClient]] = []

    def start(settings: Settings | None = None, provisioner: Any = None) -> ApiClient:
        settings = settings or make_settings()
        app = create_app(settings, provisioner)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="http-test-server", daemon=True
        )
        thread.start()
        client = ApiClient(f"http://127.0.0.1:{server.server_port}", contract, app, settings, provisioner)
        started.append((server, thread, client))
        return client

    yield start
    for server, thread, client in reversed(started):
        client.session.close()
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
        client.app.extensions["provisioner"].close()
        if client.app.extensions["store"] is not None:
            client.app.extensions["store"].close()
        assert not thread.is_alive(), "the test HTTP server did not stop"


@pytest.fixture
def api(serve: Callable[..., ApiClient], unreachable_settings: Callable[..., Settings]) -> ApiClient:
    return serve(unreachable_settings())


@pytest.fixture
def start_service(
    request: pytest.FixtureRequest, serve: Callable[..., ApiClient], settings_for: Callable[..., Settings]
) -> Callable[..., ApiClient]:
    def start(mode: str = "sigv4", *, emulator: Emulator | None = None, **env: str) -> ApiClient:
        if emulator is None:  # the shared emulator, reset for this test
            emulator = request.getfixturevalue("emulator")
        api = serve(settings_for(emulator, mode, **env))
        api.wait_ready()
        return api

    return start


@pytest.fixture
def live_api(start_service: Callable[..., ApiClient]) -> ApiClient:
    return start_service()


@pytest.fixture
def serve_raising(
    serve: Callable[..., ApiClient], unreachable_settings: Callable[..., Settings]
) -> Callable[[Exception], ApiClient]:
    return lambda error: serve(unreachable_settings(), RaisingProvisioner(error))


@pytest.fixture
def contract_check(contract: OpenAPI) -> Callable[[requests.Response], None]:
    return lambda response: check_against_contract(contract, response)


@pytest.fixture
def csr_pem() -> str:
    return make_csr()[1]


@pytest.fixture
def stores(database_url: str) -> Iterator[Callable[[], Store]]:
    """stores() -> a new Store on the test's database, each with its own engine, as several hosts
    would have; all closed after the test."""
    opened: list[Store] = []

    def open_store() -> Store:
        store = Store.open(database_url)
        opened.append(store)
        return store

    yield open_store
    for store in opened:
        store.close()
