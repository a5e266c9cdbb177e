"""The fleet-provisioning flow over the MQTT pool (stub: the lead is writing it).

Interface used by the HTTP layer:
    provisioner.provision(template_name=..., parameters=..., csr=..., request_id=...) -> ProvisionResult
        raises service.errors.ServiceError subclasses (never anything else on purpose)
    provisioner.readiness() -> dict  {"ready": bool, "connections": [...], ...}
    provisioner.close()              disconnect everything (graceful shutdown)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from service.errors import BrokerUnavailable


@dataclass(frozen=True)
class ProvisionResult:
    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key: str | None
    device_configuration: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the key
        return f"ProvisionResult(thing_name={self.thing_name!r}, certificate_id={self.certificate_id!r})"


class Provisioner:
    def __init__(self, settings: Any) -> None:
        self.settings = settings

    def provision(self, *, template_name: str, parameters: dict[str, str], csr: str | None,
                  request_id: str) -> ProvisionResult:
        raise BrokerUnavailable("not implemented yet", step="connect", retry_after=1)

    def readiness(self) -> dict[str, Any]:
        return {"ready": False, "connections": []}

    def close(self) -> None:
        pass
