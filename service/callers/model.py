"""Who is calling and what they may do: a Caller carries its key id, role and scope."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

ROLES = ("provision", "admin")
# A rule is an operator's regular expression; bounded so a typo cannot make every request slow.
MAX_RULE_LENGTH = 500


class ScopeError(ValueError):
    """A scope that cannot be used; the message names the field."""


@dataclass(frozen=True)
class Scope:
    """What a key may mint. None/empty means no restriction of that kind."""

    templates: tuple[str, ...] | None = None
    parameter_rules: dict[str, str] = field(default_factory=dict)
    server_keys: bool = True
    enrolled_only: bool = False

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
        rules = data.get("parameterRules") or {}
        for name, pattern in rules.items():
            if len(pattern) > MAX_RULE_LENGTH:
                raise ScopeError(f"parameterRules.{name}: longer than {MAX_RULE_LENGTH} characters")
            try:
                re.compile(pattern)
            except re.error as error:
                raise ScopeError(f"parameterRules.{name}: not a regular expression ({error})") from None
        return cls(
            templates=tuple(templates) if templates is not None else None,
            parameter_rules=dict(rules),
            server_keys=bool(data.get("serverKeys", True)),
            enrolled_only=bool(data.get("enrolledOnly", False)),
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
