"""Evaluating a provisioning template for RegisterThing: parameters, then each resource.

Copies AWS IoT's fleet-provisioning templates ("Provisioning templates" in the AWS IoT developer
guide): ``Parameters`` with optional ``Default``, ``Mappings``, ``Resources`` of type
``AWS::IoT::Thing``, ``AWS::IoT::Certificate`` and ``AWS::IoT::Policy``, and a flat
``DeviceConfiguration`` returned to the device. The result is an ``Evaluation``: what the
registry must create, computed without touching it, so that ``check-template`` can show it
offline.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from emulator.errors import InvalidRequest, TemplateError
from emulator.fleet import naming
from emulator.fleet.intrinsics import (
    CERTIFICATE_ID_REF,
    Evaluator,
    as_string,
    expect,
    fail,
    one_of,
)
from emulator.registry.overrides import OVERRIDE_VALUES
from emulator.registry.specs import Evaluation, PolicySpec, ThingSpec

DEFAULT_HOOK_TIMEOUT = 5.0  # AWS gives the pre-provisioning Lambda 5 s
# CloudFormation's parameter types; IoT templates document only String, the rest read as strings.
PARAMETER_TYPES = ("String", "Number", "List", "CommaDelimitedList")
OVERRIDE_KEYS = ("AttributePayload", "ThingTypeName", "ThingGroups")
RESOURCE_TYPES = ("AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy")
# AWS's docs write "Active", a real run logged "ACTIVE": the value is read in any letter case.
CERTIFICATE_STATUSES = ("ACTIVE", "INACTIVE")


@dataclass(frozen=True)
class Template:
    name: str
    body: dict[str, Any]
    enabled: bool = True
    pre_provisioning_hook_url: str | None = None
    pre_provisioning_hook_timeout: float = DEFAULT_HOOK_TIMEOUT


def _resolve_parameters(template: Template, supplied: Mapping[str, str]) -> dict[str, str]:
    # Supplied parameters that the template does not declare are ignored, as AWS does.
    values: dict[str, str] = {}
    declared = expect(template.body.get("Parameters", {}), dict, "Parameters")
    for name, declaration in declared.items():
        path = f"Parameters.{name}"
        one_of(expect(declaration, dict, path).get("Type"), PARAMETER_TYPES, f"{path}.Type")
        if name == CERTIFICATE_ID_REF:
            # AWS supplies it during RegisterThing; many public templates (Terraform, CDK) also
            # declare it as {"Type": "String"}, and a real run that sent only SerialNumber
            # succeeded. So it is never required from the caller; the Evaluator resolves it.
            continue
        if name in supplied:
            if not isinstance(supplied[name], str):
                raise InvalidRequest(f"parameter {name!r} must be a string")
            values[name] = supplied[name]
        elif "Default" in declaration:
            values[name] = as_string(declaration["Default"], f"{path}.Default")
        else:
            raise TemplateError(
                f"parameter {name!r} is required by template {template.name!r} and was not supplied"
            )
    return values


def _optional(ev: Evaluator, props: dict[str, Any], key: str, path: str, rule: naming.Rule) -> str | None:
    if key not in props:
        return None
    return rule.check(ev.string(props[key], f"{path}.{key}"), key, f"{path}.{key}")


def _attributes(ev: Evaluator, props: dict[str, Any], path: str) -> dict[str, str]:
    a_path = f"{path}.AttributePayload"
    attributes = ev.string_map(props.get("AttributePayload", {}), a_path)
    for name, value in attributes.items():
        naming.ATTRIBUTE_NAME.check(name, "AttributePayload.Attributes", a_path)
        naming.ATTRIBUTE_VALUE.check(value, f"AttributePayload.Attributes.{name}", f"{a_path}.{name}")
    return attributes


def _thing(ev: Evaluator, resource: dict[str, Any], props: dict[str, Any], path: str) -> ThingSpec:
    p = f"{path}.Properties"
    if "ThingName" not in props:
        raise fail(f"{p}.ThingName", "is required")
    name = naming.THING_NAME.check(
        ev.string(props["ThingName"], f"{p}.ThingName"), "ThingName", f"{p}.ThingName"
    )
    g_path = f"{p}.ThingGroups"
    groups = ev.strings(props.get("ThingGroups", []), g_path)
    for i, group in enumerate(groups):
        naming.THING_GROUP_NAME.check(group, f"ThingGroups[{i}]", f"{g_path}[{i}]")
    o_path = f"{path}.OverrideSettings"
    overrides = expect(resource.get("OverrideSettings", {}), dict, o_path)
    for key, setting in overrides.items():
        one_of(key, OVERRIDE_KEYS, o_path)
        one_of(setting, OVERRIDE_VALUES, f"{o_path}.{key}")
    return ThingSpec(
        thing_name=name,
        attributes=_attributes(ev, props, p),
        thing_type_name=_optional(ev, props, "ThingTypeName", p, naming.THING_TYPE_NAME),
        thing_groups=tuple(groups),
        billing_group=_optional(ev, props, "BillingGroup", p, naming.BILLING_GROUP_NAME),
        override_settings=dict(overrides),
    )


def _certificate_status(ev: Evaluator, props: dict[str, Any], path: str) -> str:
    # Fleet provisioning lets a template name only the certificate being provisioned.
    c_path = f"{path}.Properties.CertificateId"
    if ev.string(props.get("CertificateId"), c_path) != ev.certificate_id:
        raise fail(c_path, f"must be {{'Ref': '{CERTIFICATE_ID_REF}'}}")
    s_path = f"{path}.Properties.Status"
    status = ev.string(props.get("Status", "ACTIVE"), s_path)
    if status.upper() not in CERTIFICATE_STATUSES:
        raise fail(
            s_path,
            f"must be one of {', '.join(CERTIFICATE_STATUSES)} (in any letter case), got {status[:140]!r}",
        )
    return status.upper()


def _policy(ev: Evaluator, props: dict[str, Any], path: str, logical_id: str) -> PolicySpec:
    p = f"{path}.Properties"
    if "PolicyName" not in props and "PolicyDocument" not in props:
        raise fail(p, "a policy needs PolicyName or PolicyDocument")
    name = _optional(ev, props, "PolicyName", p, naming.POLICY_NAME)
    text = None
    if "PolicyDocument" in props:
        d_path = f"{p}.PolicyDocument"
        document = ev.value(props["PolicyDocument"], d_path)
        if isinstance(document, str):
            try:
                expect(json.loads(document), dict, d_path)
            except (ValueError, RecursionError) as exc:
                raise fail(d_path, f"is not valid JSON: {exc}") from None
            text = document  # AWS keeps the document text as given
        else:
            text = json.dumps(expect(document, dict, d_path, " or a JSON string"))
    return PolicySpec(policy_name=name, policy_document=text, logical_id=logical_id)


def evaluate(template: Template, parameters: Mapping[str, str], certificate_id: str) -> Evaluation:
    """Evaluate ``template`` for a RegisterThing request; raise TemplateError if it cannot be."""
    body = expect(template.body, dict, f"template {template.name!r}")
    mappings = expect(body.get("Mappings", {}), dict, "Mappings")
    ev = Evaluator(_resolve_parameters(template, parameters), certificate_id, mappings)
    thing: ThingSpec | None = None
    status = "ACTIVE"  # without a Certificate resource: an assumption, AWS's is unconfirmed
    policies: list[PolicySpec] = []
    seen: set[str] = set()
    for logical_id, resource in expect(body.get("Resources", {}), dict, "Resources").items():
        path = f"Resources.{logical_id}"
        props_path = f"{path}.Properties"
        props = expect(expect(resource, dict, path).get("Properties", {}), dict, props_path)
        kind = one_of(resource.get("Type"), RESOURCE_TYPES, f"{path}.Type")
        if kind in seen and kind != "AWS::IoT::Policy":
            raise fail(path, f"a template can hold at most one {kind}")
        seen.add(kind)
        if kind == "AWS::IoT::Thing":
            thing = _thing(ev, resource, props, path)
        elif kind == "AWS::IoT::Certificate":
            status = _certificate_status(ev, props, path)
        else:
            policies.append(_policy(ev, props, path, logical_id))
    flat = " (DeviceConfiguration must be flat)"
    configuration = ev.string_map(body.get("DeviceConfiguration", {}), "DeviceConfiguration", flat)
    return Evaluation(thing, status, tuple(policies), configuration)
