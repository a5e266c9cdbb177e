"""What every front door gives the provision use case, and what it gets back.

A door (the JSON API, `service.http.provision`; EST next) authenticates its caller and reads its
wire format into a `ProvisionRequest`, calls `Provisioning.provision` (service.provisioning.use_case)
once, and renders the `Outcome`, or the `ServiceError` it raises (service.errors), its own way.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from service.callers.model import AnyCaller


@dataclass(frozen=True)
class Arrival:
    """What a door knows of a request before reading it: its id, where it came from, and when."""

    request_id: str
    caller_address: str | None
    at: datetime = field(default_factory=lambda: datetime.now(UTC))
    started: float = field(default_factory=time.monotonic)  # for the attempt's duration


@dataclass(frozen=True)
class IdempotencyKey:
    """The caller's key for safe retries, and what makes a retry the same request: the SHA-256
    of the door's canonical form of it (`Idempotency.digest` of the JSON body)."""

    key: str
    request_sha256: str


@dataclass(frozen=True)
class ProvisionRequest:
    """One request to provision a device, as a door read it.

    `caller` is who asks, as the gate understands it: an API key's `Caller`
    (service.callers.keys) or a `DeviceCaller` whose certificate a registered device CA issued
    (service.callers.presented), never a door's own request object. A device caller's template
    and parameters are its group's (`identity.template`, `identity.parameters_with(body)`).
    `csr` is a PEM certificate signing request the door checked (exactly one CSR, for a key AWS
    IoT accepts), or None for AWS IoT to make the key pair."""

    arrival: Arrival
    caller: AnyCaller
    template: str
    parameters: Mapping[str, str]
    csr: str | None = None
    idempotency: IdempotencyKey | None = None

    @property
    def flow(self) -> str:
        return "csr" if self.csr is not None else "server-key"


@dataclass(frozen=True)
class Outcome:
    """The identity a provision issued, or the one an Idempotency-Key replays (without its private
    key, which is never kept: such a replay is a KeyNotReplayable error instead). Failures are
    raised as the service's error tree (service.errors), never returned."""

    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key: str | None
    device_configuration: Mapping[str, str]
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        """As an Idempotency-Key's record keeps it (the settlement drops `privateKey`, noting it
        was there). Its names are the JSON API's, so records written by earlier versions, which
        kept the JSON answer itself, replay alike."""
        kept: dict[str, Any] = {
            "thingName": self.thing_name,
            "certificateId": self.certificate_id,
            "certificatePem": self.certificate_pem,
        }
        if self.private_key is not None:
            kept["privateKey"] = self.private_key
        kept["deviceConfiguration"] = dict(self.device_configuration)
        return kept

    @classmethod
    def replayed_from(cls, kept: Mapping[str, Any]) -> Outcome:
        return cls(
            thing_name=kept["thingName"],
            certificate_id=kept["certificateId"],
            certificate_pem=kept["certificatePem"],
            private_key=None,
            device_configuration=kept.get("deviceConfiguration") or {},
            replayed=True,
        )

    def __repr__(self) -> str:  # never print the key
        return f"Outcome(thing_name={self.thing_name!r}, certificate_id={self.certificate_id!r})"
