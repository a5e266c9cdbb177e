"""Client of the provisioning service, for factory PCs: the library and the `iot-factory` CLI.

    from provisioner_client import Client
    with Client("https://provisioner.example", api_key) as client:
        result = client.provision("demo", {"SerialNumber": "SN-1"}, csr_pem)

It needs only httpx, cryptography, click and rich: it never imports the service or the emulator.
"""

from provisioner_client.client import Client, Identity
from provisioner_client.errors import (
    AlreadyProvisionedError,
    AuthenticationError,
    ForbiddenError,
    IdempotencyConflict,
    InvalidRequestError,
    KeyNotReplayableError,
    ProvisionerError,
    RateLimitedError,
    ServiceUnavailableError,
    TransportError,
)
from provisioner_client.results import ProvisionResult

__all__ = [
    "AlreadyProvisionedError",
    "AuthenticationError",
    "Client",
    "ForbiddenError",
    "IdempotencyConflict",
    "Identity",
    "InvalidRequestError",
    "KeyNotReplayableError",
    "ProvisionResult",
    "ProvisionerError",
    "RateLimitedError",
    "ServiceUnavailableError",
    "TransportError",
]
