"""Settings of the provisioning service: one frozen, typed object built once from `PROVISIONER_*`.

`Settings.from_env()` turns text into typed values; `Settings.__post_init__` checks the values
together (the rules are in `service/config_checks.py`), so `Settings.replace(...)` (local mode,
tests) is checked the same way. Either way every problem is listed at once in one `SettingsError`.

The endpoint is given once, as an AWS data endpoint host name or a URL, and the connection fields
(`endpoint_host`, `endpoint_port`, `transport`, `tls`, `websocket_path`, `alpn_protocols`) are
derived from it (`service/endpoint.py`), the auth mode and the port override; they cannot be set
on their own. `__post_init__` derives them, with `region` (from the endpoint's host when not given)
and `generate_api_key`, and sets them once, here, before anything else sees the object.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

from service.config_checks import (
    AUTH_MODES,
    LOG_FORMATS,
    LOG_LEVELS,
    NUMBERS,
    check_choices,
    check_connection,
    check_control_plane,
    check_numbers,
    check_secrets,
    check_tls,
    env_name,
    number_problem,
)
from service.endpoint import AuthMode, Endpoint, Transport, default_auth_mode, parse_endpoint, region_of

_TRUE = ("true", "1", "yes")
_FALSE = ("false", "0", "no")


class SettingsError(Exception):
    """The settings cannot be used; `problems` lists every reason, one sentence each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = [f"{len(self.problems)} problem(s) with the PROVISIONER_* settings:"]
        lines += [f"- {problem}" for problem in self.problems]
        super().__init__("\n".join(lines))


@dataclass(frozen=True, repr=False)
class Settings:
    # Where and how to connect. iot_endpoint None = local mode (the service starts the emulator).
    iot_endpoint: str | None = None
    auth_mode: AuthMode = "sigv4"
    iot_port: int | None = None
    region: str | None = None
    aws_profile: str | None = None
    claim_cert: Path | None = None
    claim_key: Path | None = None
    ca_file: Path | None = None
    # The MQTT pool and its deadlines.
    pool_size: int = 4
    pool_wait_seconds: float = 2.0
    # Spare connections while faults hold links (docs/correlation.md, "Spare connections"): at most
    # this many beyond pool_size, opened when a flow has waited this long for an answer.
    pool_spares: int = 4
    pool_spare_after_seconds: float = 0.5
    request_timeout_seconds: float = 20.0
    step_timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 10.0
    reconnect_min_seconds: float = 0.5
    reconnect_max_seconds: float = 30.0
    # A connection reuses an answer format only after it has been quiet this long since the last
    # flow in that format (docs/correlation.md: what a late duplicate needs to go unnoticed).
    quiet_window_seconds: float = 0.1
    # The HTTP API.
    api_keys: tuple[str, ...] = ()
    allow_server_generated_keys: bool = True
    max_body_bytes: int = 65536
    max_parameters: int = 32
    max_parameter_key_length: int = 128
    max_parameter_value_length: int = 2048
    log_level: str = "INFO"
    log_format: str = "text"  # json: one JSON object per line (service.logs)
    # Operations (docs/operations.md). GET /metrics needs an admin key unless this is false.
    metrics_require_admin: bool = True
    # gunicorn: where the workers' metric files live (emptied at start); None: a fresh temporary
    # directory per instance. Never share one between running instances.
    metrics_dir: Path | None = None
    # Provisions per second for the whole AWS account, shared by every worker and host through
    # the store (per process without one); None: no pace. Throttled calls are retried with
    # jittered exponential backoff from base to max seconds while the request's deadline allows.
    aws_max_rate: float | None = None
    throttle_retry_base_seconds: float = 0.1
    throttle_retry_max_seconds: float = 2.0
    # Behind the proxy (service/serving/nginx.conf.template, docs/operations.md). behind_proxy:
    # gunicorn is reachable only through one proxy that sets X-Forwarded-For to its own peer's
    # address, so the caller's address (the audit trail's) is that header's last value, one hop
    # and no more; never set it where a client can reach gunicorn itself. The other two shape the
    # nginx that `python -m service.serving.production` renders: requests per second per client
    # address (burst: twice that), and whether GET /metrics is passed on (else 404 there).
    behind_proxy: bool = False
    proxy_rate_per_address: int = 100
    proxy_metrics: bool = False
    # Mutual TLS (docs/attestation.md): nginx listens on tls_bind with the server certificate
    # chain tls_cert and its key tls_key, asks every client for a certificate without requiring
    # or checking one, and passes the one it got to the service, which checks it against the
    # registered device CAs. Local mode makes a certificate for localhost when none is given.
    # proxy_socket: a unix socket gunicorn also listens on for that nginx alone (`make run`,
    # whose own listener is gunicorn's): a request that came on it is the proxy's, as every
    # request is with behind_proxy.
    tls_bind: str | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    proxy_socket: Path | None = None
    # gunicorn (service/serving/gunicorn_conf.py). threads None: two per pooled connection, so requests
    # past the pool wait for a connection (bounded) instead of queueing unseen in the socket.
    bind: str = "127.0.0.1:8000"
    workers: int = 2
    threads: int | None = None
    graceful_timeout: int = 30
    # gunicorn's control socket (gunicornc): None turns it off. Its default is one path per
    # user, which a second instance on the host takes over and removes when it stops.
    control_socket: Path | None = None
    # The store (keys, enrollments, audit, idempotency). None: an SQLite file in data_dir (in
    # local mode, beside the emulator's data); "off": no store, PROVISIONER_API_KEYS only.
    database_url: str | None = None
    data_dir: Path = Path("data")
    idempotency_ttl_hours: float = 24.0
    audit_retention_days: float = 90.0
    # AWS IoT's control plane (service.aws, service.lifecycle: docs/lifecycle.md). None: botocore's
    # endpoint for the region; an http(s) URL otherwise (the emulator's in local mode and tests),
    # trusted through control_ca_file when given.
    control_endpoint: str | None = None
    control_ca_file: Path | None = None
    # The orphan sweep: every this many seconds per worker (0: only when asked), for certificates
    # recorded at least orphan_grace_seconds ago. A rotation retires the old certificate after
    # rotation_grace_seconds unless told otherwise.
    orphan_sweep_seconds: float = 60.0
    orphan_grace_seconds: float = 30.0
    rotation_grace_seconds: float = 86400.0
    # Local mode only.
    emulator_mode: AuthMode = "sigv4"
    emulator_data_dir: Path = Path(".emulator-data")
    # Fixed (access key id, secret) for SigV4 instead of botocore's chain: set by local mode for
    # the emulator's published test pair, never read from the environment, hidden from repr.
    static_credentials: tuple[str, str] | None = None
    # Derived in __post_init__ (see the module docstring).
    endpoint_host: str | None = field(init=False, default=None)
    endpoint_port: int | None = field(init=False, default=None)
    transport: Transport | None = field(init=False, default=None)
    tls: bool = field(init=False, default=False)
    websocket_path: str = field(init=False, default="/mqtt")
    alpn_protocols: tuple[str, ...] = field(init=False, default=())
    generate_api_key: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        derived, problems = self._derive_and_check()
        if problems:
            raise SettingsError(problems)
        for name, value in derived.items():
            object.__setattr__(self, name, value)  # frozen: the derived fields are set once, here

    def _derive_and_check(self) -> tuple[dict[str, object], list[str]]:
        """The derived fields by name, and every problem found."""
        problems = check_choices(self.auth_mode, self.emulator_mode, self.log_level, self.log_format)
        problems += check_numbers(
            {name: getattr(self, name) for name in NUMBERS},
            aws_max_rate=self.aws_max_rate,
            threads=self.threads,
            bind=self.bind,
            iot_port=self.iot_port,
        )
        problems += check_secrets(
            self.api_keys, self.database_url, self.static_credentials, local_mode=self.local_mode
        )
        problems += check_control_plane(self.control_endpoint, self.control_ca_file)
        problems += check_tls(self.tls_bind, self.tls_cert, self.tls_key, local_mode=self.local_mode)
        derived: dict[str, object] = {"generate_api_key": self.local_mode and not self.api_keys}
        if self.local_mode:
            return derived, problems  # the connection settings are made by local mode
        try:
            endpoint = parse_endpoint(self.iot_endpoint or "", self.auth_mode, self.iot_port)
        except ValueError as error:
            return derived, [*problems, str(error)]
        region = self.region
        if region is None and self.auth_mode == "sigv4":
            region = region_of(endpoint.host)
        problems += check_connection(
            endpoint, self.auth_mode, region, self.claim_cert, self.claim_key, self.ca_file
        )
        return {**derived, **_connection(endpoint), "region": region}, problems

    @property
    def local_mode(self) -> bool:
        return self.iot_endpoint is None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = _Reader(os.environ if environ is None else environ)
        endpoint = env.text("PROVISIONER_IOT_ENDPOINT")
        values: dict[str, Any] = {
            "iot_endpoint": endpoint,
            "auth_mode": env.choice("PROVISIONER_AUTH_MODE", AUTH_MODES, default_auth_mode(endpoint)),
            "iot_port": env.number("PROVISIONER_IOT_PORT", int, None, 1, 65535),
            "region": (
                env.text("PROVISIONER_AWS_REGION")
                or region_of(endpoint)
                or env.text("AWS_REGION")
                or env.text("AWS_DEFAULT_REGION")
            ),
            "aws_profile": env.text("PROVISIONER_AWS_PROFILE"),
            "claim_cert": env.path("PROVISIONER_CLAIM_CERT"),
            "claim_key": env.path("PROVISIONER_CLAIM_KEY"),
            "ca_file": env.path("PROVISIONER_CA_FILE"),
            # Comma-separated; a _FILE may also hold one key per line.
            "api_keys": tuple(
                k.strip() for k in re.split(r"[,\n]", env.secret("PROVISIONER_API_KEYS") or "") if k.strip()
            ),
            "allow_server_generated_keys": env.boolean("PROVISIONER_ALLOW_SERVER_KEYS", True),
            "log_level": env.choice("PROVISIONER_LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            "log_format": env.choice("PROVISIONER_LOG_FORMAT", LOG_FORMATS, "text"),
            "metrics_require_admin": env.boolean("PROVISIONER_METRICS_REQUIRE_ADMIN", True),
            "behind_proxy": env.boolean("PROVISIONER_BEHIND_PROXY", False),
            "proxy_metrics": env.boolean("PROVISIONER_PROXY_METRICS", False),
            "proxy_rate_per_address": env.number("PROVISIONER_PROXY_RATE_PER_ADDRESS", int, 100, 1, 100_000),
            "tls_bind": env.text("PROVISIONER_TLS_BIND"),
            "tls_cert": env.path("PROVISIONER_TLS_CERT"),
            "tls_key": env.path("PROVISIONER_TLS_KEY"),
            "proxy_socket": env.path("PROVISIONER_PROXY_SOCKET"),
            "metrics_dir": env.path("PROVISIONER_METRICS_DIR"),
            "aws_max_rate": env.number("PROVISIONER_AWS_MAX_RATE", float, None, 0.001, 100_000),
            "bind": env.text("PROVISIONER_BIND") or "127.0.0.1:8000",
            "threads": env.number("PROVISIONER_THREADS", int, None, 1, 1000),
            "control_socket": env.path("PROVISIONER_CONTROL_SOCKET"),
            "control_endpoint": env.text("PROVISIONER_CONTROL_ENDPOINT"),
            "control_ca_file": env.path("PROVISIONER_CONTROL_CA_FILE"),
            "database_url": env.secret("PROVISIONER_DATABASE_URL"),
            "data_dir": env.path("PROVISIONER_DATA_DIR") or Path.cwd() / "data",
            "emulator_mode": env.choice("PROVISIONER_EMULATOR_MODE", AUTH_MODES, "sigv4"),
            "emulator_data_dir": env.path("PROVISIONER_EMULATOR_DATA_DIR") or Path.cwd() / ".emulator-data",
        }
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        for name, (kind, low, high) in NUMBERS.items():
            values[name] = env.number(env_name(name), kind, defaults[name], low, high)
        if (
            endpoint
            and "://" not in endpoint
            and env.text("PROVISIONER_AUTH_MODE") is None
            and (values["claim_cert"] or values["claim_key"])
        ):
            # A bare host defaults to sigv4; claim files suggest certificate was meant. Ask.
            env.problems.append(
                "PROVISIONER_CLAIM_CERT/KEY are set but PROVISIONER_AUTH_MODE is "
                "not: set it to certificate to connect with the claim "
                "certificate, or to sigv4 to sign with AWS credentials"
            )
        try:
            settings = cls(**values)
        except SettingsError as error:
            raise SettingsError(env.problems + error.problems) from None
        if env.problems:
            raise SettingsError(env.problems)
        return settings

    @property
    def store_url(self) -> str | None:
        """The database URL, or None when the store is off."""
        if self.database_url is not None:
            return None if self.database_url.lower() == "off" else self.database_url
        directory = self.emulator_data_dir if self.local_mode else self.data_dir
        return f"sqlite:///{directory.resolve() / 'provisioner.db'}"

    @property
    def worker_threads(self) -> int:
        """gunicorn threads per worker: PROVISIONER_THREADS, else two per pooled connection."""
        return self.threads if self.threads is not None else 2 * self.pool_size

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "api_keys":  # never print a key, only how many there are
                shown.append(f"api_keys=<{len(value)} hidden>")
            elif f.name == "database_url" and value is not None:  # may carry a password
                shown.append("database_url=<hidden>")
            elif f.name == "static_credentials" and value is not None:
                shown.append("static_credentials=<hidden>")
            else:
                shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    __str__ = __repr__


def _connection(endpoint: Endpoint) -> dict[str, object]:
    return {
        "endpoint_host": endpoint.host,
        "endpoint_port": endpoint.port,
        "transport": endpoint.transport,
        "tls": endpoint.tls,
        "websocket_path": endpoint.websocket_path,
        "alpn_protocols": endpoint.alpn_protocols,
    }


T = TypeVar("T")


class _Reader:
    """Reads text from the environment into typed values, noting every problem instead of raising.

    An empty value counts as unset (compose files and shells often pass `VAR=`). On a problem the
    default is returned, so the cross-field checks that follow do not report it a second time.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def text(self, name: str) -> str | None:
        value = self.environ.get(name, "").strip()
        return value or None

    def secret(self, name: str) -> str | None:
        """`name`, or the content of the file `name`_FILE names (Docker and Kubernetes secrets
        are mounted as files; an environment variable shows in `docker inspect`)."""
        value, file_name = self.text(name), self.text(name + "_FILE")
        if file_name is None:
            return value
        if value is not None:
            self.problems.append(f"{name} and {name}_FILE are both set; set one of them")
            return value
        try:
            content = Path(file_name).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            reason = error.strerror if isinstance(error, OSError) else "not UTF-8"
            self.problems.append(f"{name}_FILE={file_name!r} cannot be read: {reason}")
            return None
        if not content:
            self.problems.append(f"{name}_FILE={file_name!r} is empty")
        return content or None

    def path(self, name: str) -> Path | None:
        value = self.text(name)
        return Path(value).expanduser() if value else None

    def choice(self, name: str, allowed: tuple[T, ...], default: T, *, upper: bool = False) -> T:
        value = self.text(name)
        if value is None:
            return default
        value = value.upper() if upper else value.lower()
        if value not in allowed:
            self.problems.append(f"{name} must be one of {', '.join(map(str, allowed))}, got {value!r}")
            return default
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.text(name)
        if value is None:
            return default
        if value.lower() in _TRUE + _FALSE:
            return value.lower() in _TRUE
        self.problems.append(f"{name} must be true/false/1/0/yes/no, got {value!r}")
        return default

    def number(self, name: str, kind: Callable[[str], Any], default: Any, low: float, high: float) -> Any:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = kind(raw)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            self.problems.append(number_problem(name, cast(type, kind), low, high, raw))
            return default
        return value
