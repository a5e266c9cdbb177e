"""An enrollment group as the gate sees it, and the identity a verified device certificate proves."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from service.callers.devices.certificates import PresentedCertificate
from service.callers.devices.parameters import ParameterSource, from_json
from service.errors import InvalidInput
from service.store.device_cas import DeviceCaRecord

DEFAULT_MAX_CHAIN_DEPTH = 2
MAX_CHAIN_DEPTH = 8


@dataclass(frozen=True)
class DeviceGroup:
    """A registered device CA (enrollment group): template, parameters, policy and limits."""

    ca_id: str
    name: str
    template: str
    parameters: tuple[ParameterSource, ...]
    reprovision: str = "once"  # once | allow
    enabled: bool = True
    max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH
    rate_per_minute: int | None = None
    max_provisions: int | None = None

    @classmethod
    def from_record(cls, record: DeviceCaRecord) -> DeviceGroup:
        return cls(
            ca_id=record.ca_id,
            name=record.name,
            template=record.template,
            parameters=from_json(record.parameters),
            reprovision=record.reprovision,
            enabled=record.enabled,
            max_chain_depth=record.max_chain_depth,
            rate_per_minute=record.rate_per_minute,
            max_provisions=record.max_provisions,
        )

    @property
    def set_parameters(self) -> frozenset[str]:
        """The parameters the group sets: a request body may add only others."""
        return frozenset(source.name for source in self.parameters)


@dataclass(frozen=True)
class DeviceIdentity:
    """What a verified device certificate proves: its group (CA id, template) and the parameters
    taken from it; the certificate as the audit trail names it; the device key, so that a CSR can
    be told to carry a new one. The key is neither shown nor compared in repr."""

    group: DeviceGroup
    parameters: Mapping[str, str]
    certificate: PresentedCertificate
    public_key: CertificatePublicKeyTypes = field(repr=False, compare=False)

    @property
    def ca_id(self) -> str:
        return self.group.ca_id

    @property
    def template(self) -> str:
        return self.group.template

    @property
    def issuer(self) -> str:
        return self.certificate.issuer

    @property
    def serial(self) -> str:
        return self.certificate.serial

    @property
    def fingerprint_sha256(self) -> str:
        return self.certificate.fingerprint_sha256

    def parameters_with(self, body: Mapping[str, str] | None) -> dict[str, str]:
        """The request's parameters: the group's, plus what the body adds. The body may not
        override a parameter the group sets (the same value is not an override); InvalidInput
        (422) names each one it tried to change."""
        merged = dict(self.parameters)
        changed = {}
        for name, value in (body or {}).items():
            if name in merged and merged[name] != value:
                changed[f"parameters.{name}"] = [
                    f"set by the device's enrollment group ({self.group.ca_id}) from its certificate "
                    "or as a fixed value; a request cannot change it"
                ]
            merged.setdefault(name, value)
        if changed:
            raise InvalidInput(
                f"the request tries to change {len(changed)} parameter(s) the device certificate sets: "
                + ", ".join(sorted(changed)),
                errors=changed,
                status=422,
            )
        return merged
