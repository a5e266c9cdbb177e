"""What RegisterThing asks of the registry: a thing, a certificate status, policies, a device
configuration. Fleet provisioning computes them from a template (`emulator.fleet.evaluation`)
without touching the registry; the registry creates or updates what they describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ThingSpec:
    thing_name: str
    attributes: dict[str, str] = field(default_factory=dict)
    thing_type_name: str | None = None
    thing_groups: tuple[str, ...] = ()
    billing_group: str | None = None
    # OverrideSettings of the thing resource: keys among AttributePayload, ThingTypeName,
    # ThingGroups; values DO_NOTHING | REPLACE | MERGE | FAIL.
    override_settings: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PolicySpec:
    policy_name: str | None  # attach an existing policy by name...
    policy_document: str | None  # ...or create/attach this inline document (JSON text)
    logical_id: str = ""


@dataclass(frozen=True)
class Evaluation:
    """What RegisterThing must do, computed from a template and the request parameters."""

    thing: ThingSpec | None
    certificate_status: str  # ACTIVE (default) or INACTIVE, upper-case
    policies: tuple[PolicySpec, ...]
    device_configuration: dict[str, str]
