"""The emulator's configuration: one frozen object, built by the CLI or by a test."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# The well-known test credentials every emulator accepts unless told otherwise (documented in
# the README). They are AWS's own documentation example pair, so they never look like a leak.
DEFAULT_ACCESS_KEY_ID = "AKIDEXAMPLE"
DEFAULT_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class Limits:
    """AWS IoT Core limits, enforced by default.

    AWS publishes them at https://docs.aws.amazon.com/general/latest/gr/iot-core.html
    (AWS IoT Core endpoints and quotas, message broker and protocol limits).
    """

    max_client_id_bytes: int = 128
    max_topic_bytes: int = 256
    max_topic_slashes: int = 7
    max_payload_bytes: int = 128 * 1024
    max_subscriptions: int = 50
    max_filters_per_subscribe: int = 8
    min_keep_alive: int = 30  # AWS treats lower values as 30
    max_keep_alive: int = 1200
    connect_timeout: float = 10.0  # time allowed between TCP accept and CONNECT
    # Not AWS's published numbers: bounds that keep one client from hurting the others.
    max_requests_in_flight: int = 16  # fleet-provisioning requests per connection
    max_queued_bytes: int = 1024 * 1024  # unsent bytes before a non-reading client is dropped


@dataclass(frozen=True)
class ErrorCodes:
    """Rejections whose exact statusCode/errorCode AWS has not confirmed.

    AWS's fleet-provisioning MQTT API page
    (https://docs.aws.amazon.com/iot/latest/developerguide/fleet-provision-api.html) gives the
    shape of a rejection (statusCode, errorCode, errorMessage) but not these values.
    """

    template_not_found: tuple[int, str] = (404, "ResourceNotFoundException")
    throttled: tuple[int, str] = (429, "ThrottlingException")
    invalid_request: tuple[int, str] = (400, "InvalidRequest")


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    # Each listener is optional: None disables it, 0 picks a free port.
    mqtt_port: int | None = 0  # plain TCP, no authentication (a local convenience)
    mqtts_port: int | None = 0  # TLS with client certificates (ALPN x-amzn-mqtt-ca accepted)
    ws_port: int | None = 0  # WebSocket, SigV4 presigned URL
    wss_port: int | None = 0  # WebSocket over TLS, SigV4 presigned URL
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="iot-emulator-")))
    templates_dir: Path | None = None
    credentials: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET_ACCESS_KEY}
    )
    # Only certificates that are ACTIVE in the registry may connect over TLS (AWS behaviour);
    # off by default so a freshly provisioned certificate can be tried at once either way.
    require_active_certificates: bool = False
    key_algorithm: Literal["rsa", "ec"] = "rsa"  # "ec" is a fast, unfaithful test mode
    key_pool_size: int = 8
    send_delay: float = 0.0  # delay every packet sent, to simulate network round trips
    token_lifetime: float = 3600.0  # ownership tokens (AWS: 1 hour)
    strict_parameters: bool = False  # refuse the capitalised "Parameters" key AWS also reads
    default_override: str = "DO_NOTHING"
    sigv4_max_age: float = 900.0  # age limit of a presigned URL without X-Amz-Expires
    hook_timeout: float = 5.0  # pre-provisioning hook (AWS: 5 s)
    limits: Limits = field(default_factory=Limits)
    error_codes: ErrorCodes = field(default_factory=ErrorCodes)
    clock: Callable[[], float] = time.time
