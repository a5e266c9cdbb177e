"""Who is calling and what they may do: a Caller carries its key id, role and scope."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.callers import rules
from service.callers.rules import MAX_RULE_LENGTH

ROLES = ("provision", "admin")
__all__ = ["MAX_RULE_LENGTH", "ROLES", "UNRESTRICTED", "Caller", "KeySpec", "Scope"]


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


@dataclass(frozen=True)
class KeySpec:
    """What an operator asks for when creating a key."""

    role: str = "provision"
    name: str = ""
    scope: Scope = UNRESTRICTED
    expires_at: datetime | None = None
    max_provisions: int | None = None
    rate_per_minute: int | None = None
