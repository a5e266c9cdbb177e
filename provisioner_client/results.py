"""What a successful provision returns."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class ProvisionResult:
    """One device's identity. `private_key` is set only when the service made the key pair (no CSR);
    it is left out of repr so that a logged result never shows it."""

    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key: str | None = field(repr=False)
    device_configuration: Mapping[str, str]
    replayed: bool = False

    @classmethod
    def from_answer(cls, body: Mapping[str, Any], *, replayed: bool) -> ProvisionResult:
        return cls(
            thing_name=str(body["thingName"]),
            certificate_id=str(body["certificateId"]),
            certificate_pem=str(body["certificatePem"]),
            private_key=body.get("privateKey"),
            device_configuration=dict(body.get("deviceConfiguration") or {}),
            replayed=replayed,
        )
