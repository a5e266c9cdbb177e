"""The rules behind `Settings`: value ranges and cross-field rules, each over the values it reads.

Every function here returns the problems it finds, one sentence each, and changes nothing:
`service/config.py` calls them with the fields of a `Settings` being built, derives the connection
fields itself, and lists every problem at once in one `SettingsError`. Problems never contain an
API key.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

from service.endpoint import AuthMode, Endpoint, region_of

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


def check_choices(auth_mode: str, emulator_mode: str, log_level: str, log_format: str) -> list[str]:
    problems = []
    if auth_mode not in AUTH_MODES:
        problems.append(f"PROVISIONER_AUTH_MODE must be sigv4 or certificate, got {auth_mode!r}")
    if emulator_mode not in AUTH_MODES:
        problems.append(f"PROVISIONER_EMULATOR_MODE must be sigv4 or certificate, got {emulator_mode!r}")
    if log_level not in LOG_LEVELS:
        problems.append(f"PROVISIONER_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")
    if log_format not in LOG_FORMATS:
        problems.append(f"PROVISIONER_LOG_FORMAT must be text or json, got {log_format!r}")
    return problems


def check_numbers(
    numbers: Mapping[str, float],
    *,
    aws_max_rate: float | None,
    threads: int | None,
    bind: str,
    iot_port: int | None,
) -> list[str]:
    """`numbers`: the value of every field of NUMBERS, by name; the others are optional ones."""
    problems = []
    if aws_max_rate is not None and not _in_range(aws_max_rate, float, 0.001, 100_000):
        problems.append(number_problem("PROVISIONER_AWS_MAX_RATE", float, 0.001, 100_000, aws_max_rate))
    bad_numbers = [
        number_problem(env_name(name), kind, low, high, numbers[name])
        for name, (kind, low, high) in NUMBERS.items()
        if not _in_range(numbers[name], kind, low, high)
    ]
    problems += bad_numbers or _check_timing(numbers)
    if threads is not None and not _in_range(threads, int, 1, 1000):
        problems.append(f"PROVISIONER_THREADS must be an integer between 1 and 1000, got {threads!r}")
    if not bind.strip():
        problems.append("PROVISIONER_BIND must be HOST:PORT or unix:PATH")
    if iot_port is not None and not 1 <= iot_port <= 65535:
        problems.append(f"PROVISIONER_IOT_PORT must be an integer between 1 and 65535, got {iot_port!r}")
    return problems


def check_secrets(
    api_keys: tuple[str, ...],
    database_url: str | None,
    static_credentials: tuple[str, str] | None,
    *,
    local_mode: bool,
) -> list[str]:
    problems = _check_api_keys(api_keys, local_mode)
    problems += _check_database_password(database_url)
    if static_credentials is not None and (len(static_credentials) != 2 or not all(static_credentials)):
        problems.append("static_credentials must be (access key id, secret access key)")
    return problems


def check_control_plane(control_endpoint: str | None, control_ca_file: Path | None) -> list[str]:
    problems = []
    if control_endpoint is not None:
        # Checked before it is echoed: user info could hold a password.
        try:
            url = urlsplit(control_endpoint)
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
    if control_ca_file is not None:
        problems += _check_readable("PROVISIONER_CONTROL_CA_FILE", control_ca_file)
    return problems


def check_tls(
    tls_bind: str | None, tls_cert: Path | None, tls_key: Path | None, *, local_mode: bool
) -> list[str]:
    problems = []
    if (tls_cert is None) != (tls_key is None):
        problems.append("PROVISIONER_TLS_CERT and PROVISIONER_TLS_KEY go together: set both or neither")
    for name, path in (("PROVISIONER_TLS_CERT", tls_cert), ("PROVISIONER_TLS_KEY", tls_key)):
        if path is not None:
            problems += _check_readable(name, path)
    if tls_bind is not None:
        if not tls_bind.strip() or tls_bind.startswith("unix:"):
            problems.append("PROVISIONER_TLS_BIND must be HOST:PORT (or PORT)")
        elif tls_cert is None and not local_mode:
            problems.append(
                "PROVISIONER_TLS_BIND needs PROVISIONER_TLS_CERT and PROVISIONER_TLS_KEY (the server's "
                "certificate chain and key) outside local mode"
            )
    return problems


def check_connection(
    endpoint: Endpoint,
    auth_mode: str,
    region: str | None,
    claim_cert: Path | None,
    claim_key: Path | None,
    ca_file: Path | None,
) -> list[str]:
    """The endpoint against the rest. `region`: the one given, or the one derived from the endpoint."""
    problems = []
    scheme = {
        ("websockets", True): "wss",
        ("websockets", False): "ws",
        ("tcp", True): "mqtts",
        ("tcp", False): "mqtt",
    }[(endpoint.transport, endpoint.tls)]
    if auth_mode == "sigv4" and endpoint.transport != "websockets":
        problems.append(
            f"PROVISIONER_AUTH_MODE=sigv4 signs a WebSocket upgrade and needs a "
            f"wss:// or ws:// endpoint, got {scheme}://"
        )
    if auth_mode == "certificate" and endpoint.transport != "tcp":
        problems.append(
            f"PROVISIONER_AUTH_MODE=certificate needs an mqtts:// or mqtt:// "
            f"endpoint (AWS IoT takes client certificates over TLS only), "
            f"got {scheme}://"
        )
    if auth_mode == "sigv4":
        problems += _check_region(region, endpoint)
    for name, path in (("PROVISIONER_CLAIM_CERT", claim_cert), ("PROVISIONER_CLAIM_KEY", claim_key)):
        if auth_mode == "sigv4":
            continue  # unused: SigV4 signs with AWS credentials (local mode sets both kinds)
        if not endpoint.tls and path is not None:
            problems.append(f"{name} is set but {scheme}:// has no TLS to present it; use mqtts://")
        elif endpoint.tls and path is None:
            problems.append(f"{name} is required in certificate mode")
        elif path is not None:
            problems += _check_readable(name, path)
    if ca_file is not None:
        if not endpoint.tls:
            problems.append(f"PROVISIONER_CA_FILE is set but {scheme}:// uses no TLS")
        else:
            problems += _check_readable("PROVISIONER_CA_FILE", ca_file)
    return problems


def _in_range(value: object, kind: type, low: float, high: float) -> bool:
    if isinstance(value, bool) or not isinstance(value, (kind, int)):
        return False
    number = float(cast(float, value))
    return math.isfinite(number) and low <= number <= high


def _check_timing(numbers: Mapping[str, float]) -> list[str]:
    problems = []
    if numbers["step_timeout_seconds"] > numbers["request_timeout_seconds"]:
        problems.append(
            "PROVISIONER_STEP_TIMEOUT_SECONDS must not exceed PROVISIONER_REQUEST_TIMEOUT_SECONDS"
        )
    if numbers["pool_wait_seconds"] >= numbers["request_timeout_seconds"]:
        problems.append("PROVISIONER_POOL_WAIT_SECONDS must be less than PROVISIONER_REQUEST_TIMEOUT_SECONDS")
    if numbers["reconnect_min_seconds"] > numbers["reconnect_max_seconds"]:
        problems.append("PROVISIONER_RECONNECT_MIN_SECONDS must not exceed PROVISIONER_RECONNECT_MAX_SECONDS")
    if numbers["throttle_retry_base_seconds"] > numbers["throttle_retry_max_seconds"]:
        problems.append(
            "PROVISIONER_THROTTLE_RETRY_BASE_SECONDS must not exceed PROVISIONER_THROTTLE_RETRY_MAX_SECONDS"
        )
    return problems


def _check_api_keys(api_keys: tuple[str, ...], local_mode: bool) -> list[str]:
    # Problems name the position of a key, never the key itself.
    problems = []
    if not local_mode and not api_keys:
        problems.append(
            "PROVISIONER_API_KEYS is required outside local mode: comma-separated "
            f"keys of at least {MIN_API_KEY_LENGTH} characters"
        )
    for number, key in enumerate(api_keys, start=1):
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


def _check_region(region: str | None, endpoint: Endpoint) -> list[str]:
    host_region = region_of(endpoint.host)
    if region is None:
        return [
            f"PROVISIONER_AWS_REGION is required in sigv4 mode: it cannot be derived from "
            f"the endpoint host {endpoint.host!r} (AWS_REGION or AWS_DEFAULT_REGION also do)"
        ]
    if not _REGION.fullmatch(region):
        return [f"PROVISIONER_AWS_REGION must look like 'eu-west-1', got {region!r}"]
    if host_region is not None and host_region != region:
        return [
            f"PROVISIONER_AWS_REGION={region} contradicts the endpoint's region "
            f"{host_region}: SigV4 would be refused"
        ]
    return []


def _check_readable(name: str, path: Path) -> list[str]:
    if not path.is_file():
        return [f"{name}={str(path)!r} does not exist or is not a file"]
    if not os.access(path, os.R_OK):
        return [f"{name}={str(path)!r} is not readable by this process"]
    return []
