"""Provisioning templates: loading them from a directory and evaluating one for RegisterThing.

Files: one JSON file per template, ``<name>.json``; the file name is the template name (AWS's rule:
1-36 characters of ``[0-9A-Za-z_-]``); other files are ignored with a warning. A file holds either
the template body itself, or a wrapper mirroring AWS's CreateProvisioningTemplate fields::

    {"templateBody": {...} or "<the body as a JSON string>",
     "enabled": true,
     "preProvisioningHook": {"url": "http://127.0.0.1:9000/hook", "timeoutSeconds": 5}}

``enabled`` defaults to true; ``url`` stands in for AWS's ``targetArn`` (a Lambda) and receives the
hook event (``emulator.hooks``); ``timeoutSeconds`` defaults to AWS's 5 s. Other fields
(description, provisioningRoleArn, ...) are ignored. Files are read on every ``get``, so edits
apply to the next request. The demo template ships as ``emulator/data/demo.json`` and is served as
``demo`` unless the directory has its own ``demo.json``.

Evaluation follows the reference, section 6. Errors are ``TemplateError`` naming the location, e.g.
``Resources.thing.Properties.ThingName: unknown function 'Fn::If'``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError, InvalidRequest, TemplateError, TemplateNotFound

log = logging.getLogger(__name__)
T = TypeVar("T")

CERTIFICATE_ID_REF = "AWS::IoT::Certificate::Id"
MAX_DEPTH = 32  # a hostile template must not exhaust the Python stack
TEMPLATE_NAME = re.compile(r"[0-9A-Za-z_-]{1,36}")
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
POLICY_NAME = re.compile(r"[\w+=,.@-]{1,128}", re.ASCII)  # AWS IoT's rule for policy names
# CloudFormation's parameter types; IoT templates document only String, the rest read as strings.
PARAMETER_TYPES = ("String", "Number", "List", "CommaDelimitedList")
OVERRIDE_KEYS = ("AttributePayload", "ThingTypeName", "ThingGroups")
OVERRIDE_VALUES = ("DO_NOTHING", "REPLACE", "MERGE", "FAIL")
RESOURCE_TYPES = ("AWS::IoT::Thing", "AWS::IoT::Certificate", "AWS::IoT::Policy")
# AWS's answer to RegisterThing on a disabled template is unconfirmed: TemplateStore takes it.
DISABLED = (400, "InvalidRequestException")
DEFAULT_HOOK_TIMEOUT = 5.0  # AWS gives the pre-provisioning Lambda 5 s (reference section 6)
DEMO_PATH = Path(__file__).parent / "data" / "demo.json"
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_KIND_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


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
    certificate_status: str  # ACTIVE (default) or INACTIVE
    policies: tuple[PolicySpec, ...]
    device_configuration: dict[str, str]


@dataclass(frozen=True)
class Template:
    name: str
    body: dict
    enabled: bool = True
    pre_provisioning_hook_url: str | None = None
    pre_provisioning_hook_timeout: float = DEFAULT_HOOK_TIMEOUT


def _fail(path: str, problem: str) -> TemplateError:
    return TemplateError(f"{path}: {problem}")


def _kind(value: object) -> str:
    return "null" if value is None else _KIND_NAMES.get(type(value), type(value).__name__)


def _brief(text: str) -> str:
    return repr(text if len(text) <= 140 else text[:140] + "...")  # names come from devices


def _expect(value: object, kind: type[T], path: str, hint: str = "") -> T:
    if not isinstance(value, kind):
        raise _fail(path, f"expected {_KIND_NAMES[kind]}, got {_kind(value)}{hint}")
    return value


def _as_string(value: object, path: str, hint: str = "") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # JSON numbers read as their text, as CloudFormation does
    return _expect(value, str, path, hint)


def _one_of(value: object, allowed: tuple[str, ...], path: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _fail(path, f"must be one of {', '.join(allowed)}, got {_brief(str(value))}")
    return value


class _Evaluator:
    """Evaluates intrinsic functions over one template with resolved parameters."""

    def __init__(self, parameters: dict[str, str], certificate_id: str, mappings: dict) -> None:
        self.parameters = parameters
        self.certificate_id = certificate_id
        self.mappings = mappings
        self.functions: dict[str, Callable[[object, str, int], object]] = {
            "Fn::Join": self._join,
            "Fn::Select": self._select,
            "Fn::Split": self._split,
            "Fn::Sub": self._sub,
            "Fn::FindInMap": self._find_in_map,
        }

    def value(self, node: object, path: str, depth: int = 0) -> object:
        if depth > MAX_DEPTH:
            raise _fail(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref":
                    return self._ref(arg, path)
                if key.startswith("Fn::"):
                    if key not in self.functions:
                        raise _fail(path, f"unknown function {key!r}")
                    return self.functions[key](arg, f"{path}.{key}", depth + 1)
            return {k: self.value(v, f"{path}.{k}", depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        return node

    def string(self, node: object, path: str, depth: int = 0) -> str:
        return _as_string(self.value(node, path, depth), path)

    def strings(self, node: object, path: str, depth: int = 0) -> list[str]:
        items = _expect(self.value(node, path, depth), list, path)
        return [_as_string(item, f"{path}[{i}]") for i, item in enumerate(items)]

    def string_map(self, node: object, path: str, hint: str = "") -> dict[str, str]:
        mapping = _expect(self.value(node, path), dict, path)
        return {k: _as_string(v, f"{path}.{k}", hint) for k, v in mapping.items()}

    @staticmethod
    def _arguments(arg: object, path: str, count: int, shape: str) -> list:
        if not isinstance(arg, list) or len(arg) != count:
            raise _fail(path, f"expects {shape}")
        return arg

    def _ref(self, arg: object, path: str) -> str:
        name = _expect(arg, str, f"{path}.Ref")
        if name == CERTIFICATE_ID_REF:
            return self.certificate_id
        if name not in self.parameters:
            raise _fail(path, f"Ref to unknown parameter {_brief(name)}")
        return self.parameters[name]

    def _join(self, arg: object, path: str, depth: int) -> str:
        delimiter, items = self._arguments(arg, path, 2, "[delimiter, list]")
        separator = self.string(delimiter, f"{path}[0]", depth)
        return separator.join(self.strings(items, f"{path}[1]", depth))

    def _select(self, arg: object, path: str, depth: int) -> object:
        index_node, items_node = self._arguments(arg, path, 2, "[index, list]")
        index = self.value(index_node, f"{path}[0]", depth)
        if isinstance(index, str) and index.isascii() and index.isdigit():
            index = int(index)  # CloudFormation writes the index as a number or digits
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise _fail(path, f"Fn::Select: index must be a non-negative integer, got {index!r}")
        items = _expect(self.value(items_node, f"{path}[1]", depth), list, f"{path}[1]")
        if index >= len(items):
            raise _fail(path, f"Fn::Select: index {index} out of range for list of {len(items)}")
        return items[index]

    def _split(self, arg: object, path: str, depth: int) -> list[str]:
        delimiter_node, source = self._arguments(arg, path, 2, "[delimiter, string]")
        delimiter = self.string(delimiter_node, f"{path}[0]", depth)
        if not delimiter:
            raise _fail(path, "Fn::Split: the delimiter is empty")
        return self.string(source, f"{path}[1]", depth).split(delimiter)

    def _sub(self, arg: object, path: str, depth: int) -> str:
        variables: dict[str, str] = {}
        text = arg
        if isinstance(arg, list):
            text, nodes = self._arguments(arg, path, 2, "a string or [string, {variables}]")
            nodes = _expect(nodes, dict, f"{path}[1]")
            variables = {k: self.string(v, f"{path}[1].{k}", depth + 1) for k, v in nodes.items()}
        # The text must be literal: substituting into an evaluated value would expand a ${...}
        # that a device smuggled in through a parameter.
        text = _expect(text, str, path, " (Fn::Sub takes a literal string)")

        def replace(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):  # ${!Literal} writes ${Literal}, as in CloudFormation
                return "${" + name[1:] + "}"
            name = name.strip()
            if name in variables:
                return variables[name]
            if name == CERTIFICATE_ID_REF:
                return self.certificate_id
            if name in self.parameters:
                return self.parameters[name]
            raise _fail(path, f"Fn::Sub: unknown variable '${{{name}}}'")

        return _SUB_VARIABLE.sub(replace, text)

    def _find_in_map(self, arg: object, path: str, depth: int) -> object:
        nodes = self._arguments(arg, path, 3, "[map name, top-level key, second-level key]")
        name, key1, key2 = (self.string(n, f"{path}[{i}]", depth) for i, n in enumerate(nodes))
        mapping = self.mappings.get(name)
        if not isinstance(mapping, dict):
            raise _fail(path, f"Fn::FindInMap: mapping {_brief(name)} does not exist")
        level = mapping.get(key1)
        if not isinstance(level, dict):
            raise _fail(path, f"Fn::FindInMap: key {_brief(key1)} not in mapping {name!r}")
        if key2 not in level:
            raise _fail(path, f"Fn::FindInMap: key {_brief(key2)} not in mapping {name!r}.{key1}")
        return level[key2]  # literal: AWS allows no intrinsic functions inside Mappings


def _resolve_parameters(template: Template, supplied: Mapping[str, str]) -> dict[str, str]:
    # Supplied parameters that the template does not declare are ignored, as AWS does.
    values: dict[str, str] = {}
    declared = _expect(template.body.get("Parameters", {}), dict, "Parameters")
    for name, declaration in declared.items():
        path = f"Parameters.{name}"
        _one_of(_expect(declaration, dict, path).get("Type"), PARAMETER_TYPES, f"{path}.Type")
        if name in supplied:
            if not isinstance(supplied[name], str):
                raise InvalidRequest(f"parameter {name!r} must be a string")
            values[name] = supplied[name]
        elif "Default" in declaration:
            values[name] = _as_string(declaration["Default"], f"{path}.Default")
        else:
            raise TemplateError(
                f"parameter {name!r} is required by template {template.name!r} and was not supplied"
            )
    return values


def _thing(ev: _Evaluator, resource: dict, props: dict, path: str) -> ThingSpec:
    p = f"{path}.Properties"
    if "ThingName" not in props:
        raise _fail(f"{p}.ThingName", "is required")
    name = ev.string(props["ThingName"], f"{p}.ThingName")
    if not THING_NAME.fullmatch(name):
        raise _fail(f"{p}.ThingName", f"{_brief(name)} is not 1-128 characters of [a-zA-Z0-9:_-]")
    type_name, billing = (
        ev.string(props[key], f"{p}.{key}") if key in props else None
        for key in ("ThingTypeName", "BillingGroup")
    )
    o_path = f"{path}.OverrideSettings"
    overrides = _expect(resource.get("OverrideSettings", {}), dict, o_path)
    for key, setting in overrides.items():
        _one_of(key, OVERRIDE_KEYS, o_path)
        _one_of(setting, OVERRIDE_VALUES, f"{o_path}.{key}")
    return ThingSpec(
        thing_name=name,
        attributes=ev.string_map(props.get("AttributePayload", {}), f"{p}.AttributePayload"),
        thing_type_name=type_name,
        thing_groups=tuple(ev.strings(props.get("ThingGroups", []), f"{p}.ThingGroups")),
        billing_group=billing,
        override_settings=dict(overrides),
    )


def _certificate_status(ev: _Evaluator, props: dict, path: str) -> str:
    # Fleet provisioning lets a template name only the certificate being provisioned.
    c_path = f"{path}.Properties.CertificateId"
    if ev.string(props.get("CertificateId"), c_path) != ev.certificate_id:
        raise _fail(c_path, f"must be {{'Ref': '{CERTIFICATE_ID_REF}'}}")
    status = ev.string(props.get("Status", "ACTIVE"), f"{path}.Properties.Status")
    return _one_of(status, ("ACTIVE", "INACTIVE"), f"{path}.Properties.Status")


def _policy(ev: _Evaluator, props: dict, path: str, logical_id: str) -> PolicySpec:
    p = f"{path}.Properties"
    if "PolicyName" not in props and "PolicyDocument" not in props:
        raise _fail(p, "a policy needs PolicyName or PolicyDocument")
    name = text = None
    if "PolicyName" in props:
        name = ev.string(props["PolicyName"], f"{p}.PolicyName")
        if not POLICY_NAME.fullmatch(name):
            raise _fail(f"{p}.PolicyName", f"{_brief(name)} is not a valid policy name")
    if "PolicyDocument" in props:
        d_path = f"{p}.PolicyDocument"
        document = ev.value(props["PolicyDocument"], d_path)
        if isinstance(document, str):
            try:
                _expect(json.loads(document), dict, d_path)
            except (ValueError, RecursionError) as exc:
                raise _fail(d_path, f"is not valid JSON: {exc}") from None
            text = document  # AWS keeps the document text as given
        else:
            text = json.dumps(_expect(document, dict, d_path, " or a JSON string"))
    return PolicySpec(policy_name=name, policy_document=text, logical_id=logical_id)


def evaluate(template: Template, parameters: Mapping[str, str], certificate_id: str) -> Evaluation:
    """Evaluate ``template`` for a RegisterThing request; raise TemplateError if it cannot be."""
    body = _expect(template.body, dict, f"template {template.name!r}")
    mappings = _expect(body.get("Mappings", {}), dict, "Mappings")
    ev = _Evaluator(_resolve_parameters(template, parameters), certificate_id, mappings)
    thing: ThingSpec | None = None
    status = "ACTIVE"  # without a Certificate resource: an assumption, AWS's is unconfirmed
    policies: list[PolicySpec] = []
    seen: set[str] = set()
    for logical_id, resource in _expect(body.get("Resources", {}), dict, "Resources").items():
        path = f"Resources.{logical_id}"
        props_path = f"{path}.Properties"
        props = _expect(_expect(resource, dict, path).get("Properties", {}), dict, props_path)
        kind = _one_of(resource.get("Type"), RESOURCE_TYPES, f"{path}.Type")
        if kind in seen and kind != "AWS::IoT::Policy":
            raise _fail(path, f"a template can hold at most one {kind}")
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


class TemplateStore:
    """Templates read from ``<directory>/<name>.json`` on every ``get``, plus the packaged demo."""

    def __init__(self, directory: Path | None, *, disabled: tuple[int, str] = DISABLED) -> None:
        """``disabled`` is the (statusCode, errorCode) for RegisterThing on a disabled template."""
        if directory is not None and not directory.is_dir():
            raise ConfigError(f"templates directory {directory} does not exist")
        self._directory = directory
        self._disabled = disabled
        self._warned: set[str] = set()
        self.names()  # warn about ignored files at start, not at the first request

    def names(self) -> list[str]:
        found = {"demo"}
        for path in self._directory.iterdir() if self._directory is not None else ():
            if path.suffix == ".json" and TEMPLATE_NAME.fullmatch(path.stem):
                found.add(path.stem)
            elif not path.name.startswith(".") and path.name not in self._warned:
                # Dotfiles (.gitkeep) are expected; anything else is probably a mistake.
                self._warned.add(path.name)
                log.warning("ignoring %s: not <name>.json, name of [0-9A-Za-z_-]{1,36}", path)
        return sorted(found)

    def get(self, name: str) -> Template:
        # The name check also keeps names like '../x' out of the file system.
        if not TEMPLATE_NAME.fullmatch(name):
            raise TemplateNotFound(f"template {_brief(name)} does not exist")
        template = _parse(name, *self._read(name))
        if not template.enabled:
            status, code = self._disabled
            raise TemplateError(
                f"template {name!r} is disabled", status_code=status, error_code=code
            )
        return template

    def _read(self, name: str) -> tuple[str, str]:
        if self._directory is not None:
            path = self._directory / f"{name}.json"
            try:
                return path.read_text(encoding="utf-8"), str(path)
            except FileNotFoundError:
                pass
            except (OSError, UnicodeDecodeError) as exc:
                raise TemplateError(f"template file {path} cannot be read: {exc}") from None
        if name == "demo":
            # Beside this module rather than importlib.resources.files("emulator"): under pytest,
            # tests/emulator can shadow the package name as a namespace package.
            return DEMO_PATH.read_text(encoding="utf-8"), "emulator/data/demo.json"
        raise TemplateNotFound(f"template {name!r} does not exist")


def _load_json(text: str, where: str) -> dict:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise TemplateError(f"{where}: not valid JSON: {exc}") from None
    return _expect(data, dict, where)


def _parse(name: str, text: str, source: str) -> Template:
    data = _load_json(text, source)
    if "templateBody" not in data:
        return Template(name=name, body=data)
    body = data["templateBody"]
    if isinstance(body, str):  # CreateProvisioningTemplate takes the body as a JSON string
        body = _load_json(body, f"{source}: templateBody")
    body = _expect(body, dict, f"{source}: templateBody", " or a JSON string")
    enabled = _expect(data.get("enabled", True), bool, f"{source}: enabled")
    hook = data.get("preProvisioningHook")
    if hook is None:
        return Template(name=name, body=body, enabled=enabled)
    hook = _expect(hook, dict, f"{source}: preProvisioningHook")
    url = _expect(hook.get("url"), str, f"{source}: preProvisioningHook.url")
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        raise TemplateError(f"{source}: preProvisioningHook.url must be an http(s) URL")
    timeout = hook.get("timeoutSeconds", DEFAULT_HOOK_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout <= 0:
        raise TemplateError(f"{source}: preProvisioningHook.timeoutSeconds must be positive")
    return Template(
        name=name,
        body=body,
        enabled=enabled,
        pre_provisioning_hook_url=url,
        pre_provisioning_hook_timeout=float(timeout),
    )
