"""Who is calling and what they may do.

    AnyCaller = Caller | DeviceCaller   what a ProvisionRequest's caller is; the gate takes either
    Caller         an API key: its id, role, scope, rate and quota (service.callers.keys)
    DeviceCaller   a device that proved who it is with a certificate a registered device CA
                   issued (service.callers.devices): its enrollment group sets the template and
                   parameters, the reprovision policy, the rate and the quota

Both have a `principal`: what scopes an Idempotency-Key and names the caller in a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from service.callers import rules
from service.callers.devices.model import DeviceIdentity
from service.callers.rules import MAX_RULE_LENGTH

ROLES = ("provision", "admin")
__all__ = [
    "MAX_RULE_LENGTH",
    "ROLES",
    "UNRESTRICTED",
    "AnyCaller",
    "Caller",
    "DeviceCaller",
    "KeySpec",
    "Scope",
]


@dataclass(frozen=True)
class Scope:
    """What a key may mint. None/empty means no restriction of that kind."""

    templates: tuple[str, ...] | None = None
    parameter_rules: dict[str, str] = field(default_factory=dict)
    server_keys: bool = True
    enrolled_only: bool = False
    # Stored rules that RE2 cannot run (kept from before rules ran on RE2), with why: the gate
    # refuses every provision of such a key, naming the parameter, rather than skip its rule.
    invalid_rules: dict[str, str] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "templates": list(self.templates) if self.templates is not None else None,
            "parameterRules": dict(self.parameter_rules),
            "serverKeys": self.server_keys,
            "enrolledOnly": self.enrolled_only,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Scope:
        templates = data.get("templates")
        parameter_rules = dict(data.get("parameterRules") or {})
        return cls(
            templates=tuple(templates) if templates is not None else None,
            parameter_rules=parameter_rules,
            server_keys=bool(data.get("serverKeys", True)),
            enrolled_only=bool(data.get("enrolledOnly", False)),
            invalid_rules=rules.problems(parameter_rules),
        )


UNRESTRICTED = Scope()


@dataclass(frozen=True)
class Caller:
    key_id: str
    role: str
    scope: Scope = UNRESTRICTED
    rate_per_minute: int | None = None
    max_provisions: int | None = None
    # A key from PROVISIONER_API_KEYS: admin, unrestricted, not in the store.
    bootstrap: bool = False

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def principal(self) -> str:
        return self.key_id


# An enrollment entry of a device caller (service.callers.gate) is keyed by this parameter name
# and the SHA-256 fingerprint of its certificate. Request parameters cannot start with it.
DEVICE_ENTRY_PREFIX = "device-ca:"


@dataclass(frozen=True)
class DeviceCaller:
    """A device whose certificate chain verified against a registered device CA. It has no key
    id: the audit trail names its CA (enrollment group) and its certificate's issuer, serial and
    fingerprint instead."""

    identity: DeviceIdentity
    role: ClassVar[str] = "device"
    is_admin: ClassVar[bool] = False

    @property
    def ca_id(self) -> str:
        return self.identity.ca_id

    @property
    def principal(self) -> str:
        """'d' and 31 hex digits (124 bits) of the certificate's SHA-256 fingerprint: an
        Idempotency-Key is the device's own (the store keeps 32 characters of a caller's id)."""
        return "d" + self.identity.fingerprint_sha256[:31]

    @property
    def entry(self) -> tuple[str, str]:
        """(parameter, value) of the enrollment entry that holds this device's provisions."""
        return DEVICE_ENTRY_PREFIX + self.ca_id, self.identity.fingerprint_sha256


AnyCaller = Caller | DeviceCaller


@dataclass(frozen=True)
class KeySpec:
    """What an operator asks for when creating a key."""

    role: str = "provision"
    name: str = ""
    scope: Scope = UNRESTRICTED
    expires_at: datetime | None = None
    max_provisions: int | None = None
    rate_per_minute: int | None = None
