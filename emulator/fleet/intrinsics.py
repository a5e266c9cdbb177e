"""Intrinsic functions of provisioning templates, and the value checks every evaluation step uses.

AWS IoT templates take CloudFormation's ``Ref``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``,
``Fn::Sub`` and ``Fn::FindInMap`` (AWS IoT developer guide, "Provisioning templates"); ``Fn::If``
and ``Conditions`` are not documented for IoT templates and are refused. Errors are
``TemplateError`` naming the location, e.g. ``Resources.thing.Properties.ThingName: unknown
function 'Fn::If'``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from emulator.errors import TemplateError

T = TypeVar("T")

# AWS supplies the id of the certificate being provisioned under this name during RegisterThing.
CERTIFICATE_ID_REF = "AWS::IoT::Certificate::Id"
MAX_DEPTH = 32  # a hostile template must not exhaust the Python stack
_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")
_KIND_NAMES = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}


def fail(path: str, problem: str) -> TemplateError:
    return TemplateError(f"{path}: {problem}")


def kind_of(value: object) -> str:
    return "null" if value is None else _KIND_NAMES.get(type(value), type(value).__name__)


def brief(text: str) -> str:
    return repr(text if len(text) <= 140 else text[:140] + "...")  # names come from devices


def expect(value: object, kind: type[T], path: str, hint: str = "") -> T:
    if not isinstance(value, kind):
        raise fail(path, f"expected {_KIND_NAMES[kind]}, got {kind_of(value)}{hint}")
    return value


def as_string(value: object, path: str, hint: str = "") -> str:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)  # JSON numbers read as their text, as CloudFormation does
    return expect(value, str, path, hint)


def one_of(value: object, allowed: tuple[str, ...], path: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise fail(path, f"must be one of {', '.join(allowed)}, got {brief(str(value))}")
    return value


class Evaluator:
    """Evaluates intrinsic functions over one template with resolved parameters."""

    def __init__(self, parameters: dict[str, str], certificate_id: str, mappings: dict[str, Any]) -> None:
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
            raise fail(path, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, arg),) = node.items()
                if key == "Ref":
                    return self._ref(arg, path)
                if key.startswith("Fn::"):
                    if key not in self.functions:
                        raise fail(path, f"unknown function {key!r}")
                    return self.functions[key](arg, f"{path}.{key}", depth + 1)
            return {k: self.value(v, f"{path}.{k}", depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(node)]
        return node

    def string(self, node: object, path: str, depth: int = 0) -> str:
        return as_string(self.value(node, path, depth), path)

    def strings(self, node: object, path: str, depth: int = 0) -> list[str]:
        items = expect(self.value(node, path, depth), list, path)
        return [as_string(item, f"{path}[{i}]") for i, item in enumerate(items)]

    def string_map(self, node: object, path: str, hint: str = "") -> dict[str, str]:
        mapping = expect(self.value(node, path), dict, path)
        return {k: as_string(v, f"{path}.{k}", hint) for k, v in mapping.items()}

    @staticmethod
    def _arguments(arg: object, path: str, count: int, shape: str) -> list[Any]:
        if not isinstance(arg, list) or len(arg) != count:
            raise fail(path, f"expects {shape}")
        return arg

    def _ref(self, arg: object, path: str) -> str:
        name = expect(arg, str, f"{path}.Ref")
        if name == CERTIFICATE_ID_REF:
            # The real id wins over a caller-sent or declared-default value: AWS supplies it
            # during RegisterThing; what AWS does with a caller-sent one is unconfirmed.
            return self.certificate_id
        if name not in self.parameters:
            raise fail(path, f"Ref to unknown parameter {brief(name)}")
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
            raise fail(path, f"Fn::Select: index must be a non-negative integer, got {index!r}")
        items = expect(self.value(items_node, f"{path}[1]", depth), list, f"{path}[1]")
        if index >= len(items):
            raise fail(path, f"Fn::Select: index {index} out of range for list of {len(items)}")
        return items[index]

    def _split(self, arg: object, path: str, depth: int) -> list[str]:
        delimiter_node, source = self._arguments(arg, path, 2, "[delimiter, string]")
        delimiter = self.string(delimiter_node, f"{path}[0]", depth)
        if not delimiter:
            raise fail(path, "Fn::Split: the delimiter is empty")
        return self.string(source, f"{path}[1]", depth).split(delimiter)

    def _sub(self, arg: object, path: str, depth: int) -> str:
        variables: dict[str, str] = {}
        text = arg
        if isinstance(arg, list):
            text, nodes = self._arguments(arg, path, 2, "a string or [string, {variables}]")
            nodes = expect(nodes, dict, f"{path}[1]")
            variables = {k: self.string(v, f"{path}[1].{k}", depth + 1) for k, v in nodes.items()}
        # The text must be literal: substituting into an evaluated value would expand a ${...}
        # that a device smuggled in through a parameter.
        text = expect(text, str, path, " (Fn::Sub takes a literal string)")

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
            raise fail(path, f"Fn::Sub: unknown variable '${{{name}}}'")

        return _SUB_VARIABLE.sub(replace, text)

    def _find_in_map(self, arg: object, path: str, depth: int) -> object:
        nodes = self._arguments(arg, path, 3, "[map name, top-level key, second-level key]")
        name, key1, key2 = (self.string(n, f"{path}[{i}]", depth) for i, n in enumerate(nodes))
        mapping = self.mappings.get(name)
        if not isinstance(mapping, dict):
            raise fail(path, f"Fn::FindInMap: mapping {brief(name)} does not exist")
        level = mapping.get(key1)
        if not isinstance(level, dict):
            raise fail(path, f"Fn::FindInMap: key {brief(key1)} not in mapping {name!r}")
        if key2 not in level:
            raise fail(path, f"Fn::FindInMap: key {brief(key2)} not in mapping {name!r}.{key1}")
        return level[key2]  # literal: AWS allows no intrinsic functions inside Mappings
