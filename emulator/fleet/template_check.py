"""`python -m emulator check-template FILE --param K=V ...`: a template evaluated offline.

Shows what RegisterThing would create from one template file and a set of parameters (thing,
attributes, type, groups, policies, certificate status, deviceConfiguration, override settings),
or the exact rejection the emulator would answer, without a server, a registry or a certificate.
The certificate id is a placeholder, and the pre-provisioning hook is not called; the output says
both. Exit status: 0 would be accepted, 1 would be rejected, 2 the file cannot be read.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError, ProvisioningError, TemplateError
from emulator.fleet.evaluation import Template, evaluate
from emulator.fleet.templates import DISABLED, TEMPLATE_NAME, parse_template
from emulator.registry import Registry
from emulator.registry.specs import Evaluation

PLACEHOLDER_CERTIFICATE_ID = "0" * 64
PLACEHOLDER_NOTE = "a placeholder: RegisterThing uses the id of the certificate being provisioned"
HOOK_NOTE = "not called offline; its parameterOverrides are not applied"


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m emulator check-template",
        description="Evaluate a provisioning template offline and show what RegisterThing "
        "would create, or the rejection it would answer.",
    )
    parser.add_argument("file", type=Path, help="a template file (<name>.json, as served)")
    parser.add_argument(
        "--param",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a RegisterThing parameter (repeatable)",
    )
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def check(path: Path, parameters: dict[str, str]) -> tuple[Template, Evaluation]:
    """Evaluate the template file as RegisterThing would; raise ProvisioningError if rejected."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    template = parse_template(path.stem, text, str(path))
    if not template.enabled:
        status, code = DISABLED  # the emulator's default answer for a disabled template
        raise TemplateError(f"template {template.name!r} is disabled", status=status, code=code)
    return template, evaluate(template, parameters, PLACEHOLDER_CERTIFICATE_ID)


def report(template: Template, evaluation: Evaluation, path: Path) -> dict[str, Any]:
    thing = evaluation.thing
    policies = []
    for spec in evaluation.policies:
        name = spec.policy_name
        if spec.policy_document is not None and name is None:
            name = Registry.inline_policy_name(template.name, spec.logical_id, spec.policy_document)
        policies.append(
            {
                "logicalId": spec.logical_id,
                "policyName": name,
                "policyDocument": spec.policy_document,
                "mustExist": spec.policy_document is None,
            }
        )
    hook = None
    if template.pre_provisioning_hook_url:
        hook = {"url": template.pre_provisioning_hook_url, "called": False, "note": HOOK_NOTE}
    return {
        "template": template.name,
        "file": str(path),
        "servedAsTemplate": bool(TEMPLATE_NAME.fullmatch(path.stem)),
        "certificateId": PLACEHOLDER_CERTIFICATE_ID,
        "certificateIdNote": PLACEHOLDER_NOTE,
        "thing": None
        if thing is None
        else {
            "thingName": thing.thing_name,
            "attributes": thing.attributes,
            "thingTypeName": thing.thing_type_name,
            "thingGroups": list(thing.thing_groups),
            "billingGroup": thing.billing_group,
            "overrideSettings": thing.override_settings,
        },
        "certificateStatus": evaluation.certificate_status,
        "policies": policies,
        "deviceConfiguration": evaluation.device_configuration,
        "preProvisioningHook": hook,
    }


def render_text(result: dict[str, Any]) -> str:
    lines = [
        f"Template {result['template']!r} ({result['file']}): RegisterThing would succeed.",
        f"Certificate id: {result['certificateId']} ({result['certificateIdNote']})",
    ]
    if not result["servedAsTemplate"]:
        lines.append(
            "Note: the emulator serves only files named <name>.json, name of "
            "[0-9A-Za-z_-]{1,36}; rename this file to use it."
        )
    thing = result["thing"]
    if thing is None:
        lines.append("Thing: none (the answer's thingName is empty)")
    else:
        pairs = ", ".join(f"{k}={v}" for k, v in thing["attributes"].items())
        settings = ", ".join(f"{k}={v}" for k, v in thing["overrideSettings"].items())
        lines += [
            f"Thing: {thing['thingName']}",
            f"  attributes: {pairs or '(none)'}",
            f"  thing type: {thing['thingTypeName'] or '(none)'}",
            f"  thing groups: {', '.join(thing['thingGroups']) or '(none)'}",
            f"  billing group: {thing['billingGroup'] or '(none)'}",
            f"  override settings (if the thing exists): {settings or '(none)'}; "
            "other keys use the emulator's default_override (DO_NOTHING unless set)",
        ]
    lines.append(f"Certificate status: {result['certificateStatus']}")
    lines.append("Policies:" if result["policies"] else "Policies: none")
    for policy in result["policies"]:
        if policy["mustExist"]:
            how = "attached by name; it must already exist"
        else:
            how = f"inline document, created if absent and attached: {policy['policyDocument']}"
        lines.append(f"  {policy['logicalId']}: {policy['policyName']} ({how})")
    lines.append(f"deviceConfiguration: {json.dumps(result['deviceConfiguration'])}")
    hook = result["preProvisioningHook"]
    if hook:
        lines.append(f"Pre-provisioning hook: {hook['url']} ({hook['note']})")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    parameters = dict(args.param)
    try:
        template, evaluation = check(args.file, parameters)
    except ConfigError as exc:
        print(f"check-template: {exc}", file=sys.stderr)
        return 2
    except ProvisioningError as exc:
        # The same payload the emulator publishes on .../provision/<fmt>/rejected.
        if args.json:
            print(json.dumps({"rejected": exc.payload()}, indent=2))
        else:
            print(f"RegisterThing would be rejected: {exc.status} {exc.code}\n{exc.message}")
        return 1
    result = report(template, evaluation, args.file)
    print(json.dumps(result, indent=2) if args.json else render_text(result))
    return 0
