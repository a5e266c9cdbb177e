"""The emulator's configuration: one frozen object, built by the CLI or by a test."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from emulator.mqtt.limits import Limits

# The well-known test credentials every emulator accepts unless told otherwise (documented in
# the README). They are AWS's own documentation example pair, so they never look like a leak.
DEFAULT_ACCESS_KEY_ID = "AKIDEXAMPLE"
DEFAULT_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class HttpLimits:
    """Bounds of the control plane's HTTP: every request is read whole within them."""

    max_header_bytes: int = 16 * 1024  # 431 past it
    # AWS IoT's largest control-plane bodies are policy documents and CSRs, tens of KB at most.
    max_body_bytes: int = 64 * 1024  # 413 past it
    idle_timeout: float = 60.0  # a kept-alive connection with no request (or a head that trickles)
    request_timeout: float = 10.0  # the body, once the head arrived (408 past it)


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
    # The control plane's door. A bad signature was seen answered 403 InvalidSignatureException
    # by AWS IoT's control plane; the other two are what AWS's services usually send (unconfirmed
    # for AWS IoT). The model's UnauthorizedException (401) is for IAM denials, which the emulator
    # does not model; a test may pick it here.
    invalid_signature: tuple[int, str] = (403, "InvalidSignatureException")
    unrecognized_client: tuple[int, str] = (403, "UnrecognizedClientException")
    missing_authentication: tuple[int, str] = (403, "MissingAuthenticationTokenException")


@dataclass(frozen=True)
class EmulatorConfig:
    host: str = "127.0.0.1"
    # Each listener is optional: None disables it, 0 picks a free port.
    mqtt_port: int | None = 0  # plain TCP, no authentication (a local convenience)
    mqtts_port: int | None = 0  # TLS with client certificates (ALPN x-amzn-mqtt-ca accepted)
    ws_port: int | None = 0  # WebSocket, SigV4 presigned URL
    wss_port: int | None = 0  # WebSocket over TLS, SigV4 presigned URL
    control_port: int | None = 0  # AWS IoT's control plane over HTTP, SigV4 (service "iot")
    control_tls_port: int | None = 0  # the same over HTTPS (the emulator's server certificate)
    # None: a temporary directory of the emulator's own, removed when it stops.
    data_dir: Path | None = None
    templates_dir: Path | None = None
    credentials: dict[str, str] = field(
        default_factory=lambda: {DEFAULT_ACCESS_KEY_ID: DEFAULT_SECRET_ACCESS_KEY}
    )
    # Only certificates that are ACTIVE in the registry may connect over TLS (AWS's rule: "Devices
    # cannot use a certificate that is not in the ACTIVE state", UpdateCertificate's reference).
    # False lets PENDING_ACTIVATION and unknown certificates in (INACTIVE and REVOKED never).
    require_active_certificates: bool = True
    # A certificate that leaves ACTIVE has its connections closed this long after (AWS: "within a
    # few minutes"); 0 closes them at once.
    certificate_disconnect_delay: float = 1.0
    account_id: str = "000000000000"  # the emulated account, in ARNs and ownedBy
    endpoint_address: str | None = None  # DescribeEndpoint's answer (default: `host`)
    key_algorithm: Literal["rsa", "ec"] = "rsa"  # "ec" is a fast, unfaithful test mode
    key_pool_size: int = 8
    send_delay: float = 0.0  # delay every packet sent, to simulate network round trips
    token_lifetime: float = 3600.0  # ownership tokens (AWS: 1 hour)
    strict_parameters: bool = False  # refuse the capitalised "Parameters" key AWS also reads
    default_override: str = "DO_NOTHING"
    sigv4_max_age: float = 900.0  # age limit of a presigned URL without X-Amz-Expires
    hook_timeout: float = 5.0  # pre-provisioning hook (AWS: 5 s)
    limits: Limits = field(default_factory=Limits)
    http_limits: HttpLimits = field(default_factory=HttpLimits)
    error_codes: ErrorCodes = field(default_factory=ErrorCodes)
    clock: Callable[[], float] = time.time
