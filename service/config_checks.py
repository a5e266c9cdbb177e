"""The checks behind `Settings`: value ranges, cross-field rules, and the derived connection fields.

`check(settings)` fills the fields derived from the endpoint and returns every problem found, so
`Settings` can list them all at once in one `SettingsError`. Problems never contain an API key.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, cast
from urllib.parse import urlsplit

from service.endpoint import AuthMode, Endpoint, parse_endpoint, region_of

if TYPE_CHECKING:
    from service.config import Settings

AUTH_MODES: tuple[AuthMode, ...] = ("sigv4", "certificate")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
LOG_FORMATS = ("text", "json")
MIN_API_KEY_LENGTH = 16
# AWS IoT refuses MQTT payloads over 128 KB (AWS IoT Core quotas): a bigger body cannot go on.
AWS_MAX_PAYLOAD_BYTES = 128 * 1024

_REGION = re.compile(r"^[a-z]{2}(?:-[a-z]+)+-\d+$")
# Characters a key may hold so that it survives an `Authorization: Bearer` header unchanged.
_API_KEY = re.compile(r"^[\x21-\x7e]+$")
# Words of the placeholders that examples and compose files carry ("change-me-to-a-long-random-key"):
# a secret holding one was copied, not chosen, and would let anyone who read the example in.
PLACEHOLDERS = ("change-me", "changeme", "change_me", "replace-me", "replaceme", "placeholder")

# field: (type, lowest, highest); the environment variable is PROVISIONER_<FIELD>.
NUMBERS: dict[str, tuple[type, float, float]] = {
    "pool_size": (int, 1, 50),
    "pool_wait_seconds": (float, 0, 60),
    "pool_spares": (int, 0, 50),
    "pool_spare_after_seconds": (float, 0.01, 300),
    "request_timeout_seconds": (float, 0.1, 300),
    "step_timeout_seconds": (float, 0.1, 300),
    "connect_timeout_seconds": (float, 0.1, 300),
    "reconnect_min_seconds": (float, 0.01, 3600),
    "reconnect_max_seconds": (float, 0.01, 3600),
    "quiet_window_seconds": (float, 0, 60),
    "max_body_bytes": (int, 1024, AWS_MAX_PAYLOAD_BYTES),
    "max_parameters": (int, 0, 1000),
    "max_parameter_key_length": (int, 1, 1024),
    "max_parameter_value_length": (int, 1, AWS_MAX_PAYLOAD_BYTES),
    "workers": (int, 1, 256),
    "graceful_timeout": (int, 0, 3600),
    "idempotency_ttl_hours": (float, 0.001, 24 * 30),
    "audit_retention_days": (float, 0.001, 3650),
    "throttle_retry_base_seconds": (float, 0.001, 60),
    "throttle_retry_max_seconds": (float, 0.001, 600),
    "orphan_sweep_seconds": (float, 0, 86400),
    "orphan_grace_seconds": (float, 0, 86400),
    "rotation_grace_seconds": (float, 0, 90 * 86400),
}


def env_name(field_name: str) -> str:
    return "PROVISIONER_" + field_name.upper()


def number_problem(name: str, kind: type, low: float, high: float, got: object) -> str:
    what = "an integer" if kind is int else "a number"
    return f"{name} must be {what} between {low:g} and {high:g}, got {got!r}"


def check(settings: Settings) -> list[str]:
    """Fill the derived fields of `settings` and return every problem found."""
    problems: list[str] = []
    s = settings

    def derive(name: str, value: object) -> None:
        object.__setattr__(s, name, value)  # frozen: derived fields are set once, here

    derive("generate_api_key", s.local_mode and not s.api_keys)
    if s.auth_mode not in AUTH_MODES:
        problems.append(f"PROVISIONER_AUTH_MODE must be sigv4 or certificate, got {s.auth_mode!r}")
    if s.emulator_mode not in AUTH_MODES:
        problems.append(f"PROVISIONER_EMULATOR_MODE must be sigv4 or certificate, got {s.emulator_mode!r}")
    if s.log_level not in LOG_LEVELS:
        problems.append(f"PROVISIONER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {s.log_level!r}")
    if s.log_format not in LOG_FORMATS:
        problems.append(f"PROVISIONER_LOG_FORMAT must be text or json, got {s.log_format!r}")
    if s.aws_max_rate is not None and not _in_range(s.aws_max_rate, float, 0.001, 100_000):
        problems.append(number_problem("PROVISIONER_AWS_MAX_RATE", float, 0.001, 100_000, s.aws_max_rate))
    bad_numbers = [
        number_problem(env_name(name), kind, low, high, getattr(s, name))
        for name, (kind, low, high) in NUMBERS.items()
        if not _in_range(getattr(s, name), kind, low, high)
    ]
    problems += bad_numbers or _check_timing(s)
    if s.threads is not None and not _in_range(s.threads, int, 1, 1000):
        problems.append(f"PROVISIONER_THREADS must be an integer between 1 and 1000, got {s.threads!r}")
    if not s.bind.strip():
        problems.append("PROVISIONER_BIND must be HOST:PORT or unix:PATH")
    if s.iot_port is not None and not 1 <= s.iot_port <= 65535:
        problems.append(f"PROVISIONER_IOT_PORT must be an integer between 1 and 65535, got {s.iot_port!r}")
    problems += _check_api_keys(s)
    problems += _check_database_password(s.database_url)
    if s.static_credentials is not None and (len(s.static_credentials) != 2 or not all(s.static_credentials)):
        problems.append("static_credentials must be (access key id, secret access key)")
    problems += _check_control_plane(s)
    problems += _check_tls(s)
    if s.local_mode:
        return problems  # the connection settings are made by local mode
    try:
        endpoint = parse_endpoint(s.iot_endpoint or "", s.auth_mode, s.iot_port)
    except ValueError as error:
        return [*problems, str(error)]
    derive("endpoint_host", endpoint.host)
    derive("endpoint_port", endpoint.port)
    derive("transport", endpoint.transport)
    derive("tls", endpoint.tls)
    derive("websocket_path", endpoint.websocket_path)
    derive("alpn_protocols", endpoint.alpn_protocols)
    problems += _check_connection(s, endpoint)
    return problems


def _check_control_plane(s: Settings) -> list[str]:
    problems = []
    if s.control_endpoint is not None:
        # Checked before it is echoed: user info could hold a password.
        try:
            url = urlsplit(s.control_endpoint)
            url.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError:
            url = None
        if url is None or url.scheme not in ("https", "http") or not url.hostname:
            problems.append("PROVISIONER_CONTROL_ENDPOINT must be an https:// or http:// URL")
        elif "@" in url.netloc or url.query or url.fragment:
            problems.append(
                "PROVISIONER_CONTROL_ENDPOINT must not contain user info, a query or a fragment "
                "(credentials come from the AWS credential chain)"
            )
    if s.control_ca_file is not None:
        problems += _check_readable("PROVISIONER_CONTROL_CA_FILE", s.control_ca_file)
    return problems


def _check_tls(s: Settings) -> list[str]:
    problems = []
    if (s.tls_cert is None) != (s.tls_key is None):
        problems.append("PROVISIONER_TLS_CERT and PROVISIONER_TLS_KEY go together: set both or neither")
    for name, path in (("PROVISIONER_TLS_CERT", s.tls_cert), ("PROVISIONER_TLS_KEY", s.tls_key)):
        if path is not None:
            problems += _check_readable(name, path)
    if s.tls_bind is not None:
        if not s.tls_bind.strip() or s.tls_bind.startswith("unix:"):
            problems.append("PROVISIONER_TLS_BIND must be HOST:PORT (or PORT)")
        elif s.tls_cert is None and not s.local_mode:
            problems.append(
                "PROVISIONER_TLS_BIND needs PROVISIONER_TLS_CERT and PROVISIONER_TLS_KEY (the server's "
                "certificate chain and key) outside local mode"
            )
    return problems


def _in_range(value: object, kind: type, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, (kind, int)):
        return False
    number = float(cast(float, value))
    return math.isfinite(number) and low <= number <= high


def _check_timing(s: Settings) -> list[str]:
    problems = []
    if s.step_timeout_seconds > s.request_timeout_seconds:
        problems.append(
            "PROVISIONER_STEP_TIMEOUT_SECONDS must not exceed PROVISIONER_REQUEST_TIMEOUT_SECONDS"
        )
    if s.pool_wait_seconds >= s.request_timeout_seconds:
        problems.append("PROVISIONER_POOL_WAIT_SECONDS must be less than PROVISIONER_REQUEST_TIMEOUT_SECONDS")
    if s.reconnect_min_seconds > s.reconnect_max_seconds:
        problems.append("PROVISIONER_RECONNECT_MIN_SECONDS must not exceed PROVISIONER_RECONNECT_MAX_SECONDS")
    if s.throttle_retry_base_seconds > s.throttle_retry_max_seconds:
        problems.append(
            "PROVISIONER_THROTTLE_RETRY_BASE_SECONDS must not exceed PROVISIONER_THROTTLE_RETRY_MAX_SECONDS"
        )
    return problems


def _check_api_keys(s: Settings) -> list[str]:
    # Problems name the position of a key, never the key itself.
    problems = []
    if not s.local_mode and not s.api_keys:
        problems.append(
            "PROVISIONER_API_KEYS is required outside local mode: comma-separated "
            f"keys of at least {MIN_API_KEY_LENGTH} characters"
        )
    for number, key in enumerate(s.api_keys, start=1):
        if len(key) < MIN_API_KEY_LENGTH:
            problems.append(
                f"PROVISIONER_API_KEYS key #{number} has {len(key)} characters; "
                f"each key needs at least {MIN_API_KEY_LENGTH}"
            )
        elif not _API_KEY.fullmatch(key):
            problems.append(
                f"PROVISIONER_API_KEYS key #{number} contains spaces or characters "
                "outside printable ASCII, which an Authorization header cannot carry"
            )
        elif _is_placeholder(key):
            problems.append(
                f"PROVISIONER_API_KEYS key #{number} is a placeholder from an example, not a secret: "
                "set a random key (openssl rand -hex 24)"
            )
    return problems


def _check_database_password(url: str | None) -> list[str]:
    # The URL is never quoted: it holds the password.
    try:
        password = urlsplit(url).password if url else None
    except ValueError:
        return []  # not a URL at all: the store says so when it opens it
    if password and _is_placeholder(password):
        return [
            "PROVISIONER_DATABASE_URL has a placeholder from an example as its password, not a "
            "secret: set a random one (openssl rand -hex 24)"
        ]
    return []


def _is_placeholder(secret: str) -> bool:
    lowered = secret.lower()
    return any(word in lowered for word in PLACEHOLDERS)


def _check_connection(s: Settings, endpoint: Endpoint) -> list[str]:
    problems = []
    scheme = {
        ("websockets", True): "wss",
        ("websockets", False): "ws",
        ("tcp", True): "mqtts",
        ("tcp", False): "mqtt",
    }[(endpoint.transport, endpoint.tls)]
    if s.auth_mode == "sigv4" and endpoint.transport != "websockets":
        problems.append(
            f"PROVISIONER_AUTH_MODE=sigv4 signs a WebSocket upgrade and needs a "
            f"wss:// or ws:// endpoint, got {scheme}://"
        )
    if s.auth_mode == "certificate" and endpoint.transport != "tcp":
        problems.append(
            f"PROVISIONER_AUTH_MODE=certificate needs an mqtts:// or mqtt:// "
            f"endpoint (AWS IoT takes client certificates over TLS only), "
            f"got {scheme}://"
        )
    if s.auth_mode == "sigv4":
        problems += _check_region(s, endpoint)
    for name, path in (("PROVISIONER_CLAIM_CERT", s.claim_cert), ("PROVISIONER_CLAIM_KEY", s.claim_key)):
        if s.auth_mode == "sigv4":
            continue  # unused: SigV4 signs with AWS credentials (local mode sets both kinds)
        if not endpoint.tls and path is not None:
            problems.append(f"{name} is set but {scheme}:// has no TLS to present it; use mqtts://")
        elif endpoint.tls and path is None:
            problems.append(f"{name} is required in certificate mode")
        elif path is not None:
            problems += _check_readable(name, path)
    if s.ca_file is not None:
        if not endpoint.tls:
            problems.append(f"PROVISIONER_CA_FILE is set but {scheme}:// uses no TLS")
        else:
            problems += _check_readable("PROVISIONER_CA_FILE", s.ca_file)
    return problems


def _check_region(s: Settings, endpoint: Endpoint) -> list[str]:
    host_region = region_of(endpoint.host)
    if s.region is None and host_region is None:
        return [
            f"PROVISIONER_AWS_REGION is required in sigv4 mode: it cannot be derived from "
            f"the endpoint host {endpoint.host!r} (AWS_REGION or AWS_DEFAULT_REGION also do)"
        ]
    if s.region is None:
        object.__setattr__(s, "region", host_region)
        return []
    if not _REGION.fullmatch(s.region):
        return [f"PROVISIONER_AWS_REGION must look like 'eu-west-1', got {s.region!r}"]
    if host_region is not None and host_region != s.region:
        return [
            f"PROVISIONER_AWS_REGION={s.region} contradicts the endpoint's region "
            f"{host_region}: SigV4 would be refused"
        ]
    return []


def _check_readable(name: str, path: Path) -> list[str]:
    if not path.is_file():
        return [f"{name}={str(path)!r} does not exist or is not a file"]
    if not os.access(path, os.R_OK):
        return [f"{name}={str(path)!r} is not readable by this process"]
    return []
