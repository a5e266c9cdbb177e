"""Template parameters of an attested device: taken from its certificate, or fixed by the group.

An operator writes, per template parameter, one of

    {"from": "subject.serialNumber"}                               the value as the certificate has it
    {"from": "san.uri", "pattern": "^urn:dev:serial:([0-9A-Z]+)$"}  the first capture of an RE2 search
    {"value": "plant-3"}                                          a fixed value

Sources: `subject.CN`, `subject.serialNumber` (2.5.4.5), `san.uri`, `san.dns`. When the source has
several values (two SAN URIs), the first that has a value (matches, with a pattern) is taken.
Patterns run on RE2 (service.callers.rules): the certificate is the device's input, and a
backtracking engine would let a crafted subject hold a worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from service.callers import rules
from service.callers.devices.certificates import extension
from service.errors import DeviceParameterMissing, InvalidInput

SOURCES = ("subject.CN", "subject.serialNumber", "san.uri", "san.dns")
# The bounds the JSON door puts on a request's parameters (PROVISIONER_MAX_PARAMETERS and
# friends at their defaults): a group cannot make what a request could not carry.
MAX_PARAMETERS = 32
MAX_NAME_LENGTH = 128
MAX_VALUE_LENGTH = 2048


@dataclass(frozen=True)
class ParameterSource:
    name: str
    source: str | None = None  # one of SOURCES
    pattern: str | None = None  # RE2, exactly one capturing group
    value: str | None = None  # a fixed value

    @property
    def from_certificate(self) -> bool:
        return self.source is not None

    def to_json(self) -> dict[str, str]:
        if self.source is None:
            return {"value": self.value or ""}
        return {"from": self.source, **({"pattern": self.pattern} if self.pattern is not None else {})}


def parse_parameters(data: Any) -> tuple[ParameterSource, ...]:
    """An operator's mapping checked: InvalidInput (422) naming every bad `parameters.<name>`."""
    if not isinstance(data, Mapping):
        raise _invalid({"parameters": "must be an object: template parameter -> {from|value}"})
    problems: dict[str, str] = {}
    sources = []
    if len(data) > MAX_PARAMETERS:
        problems["parameters"] = f"at most {MAX_PARAMETERS} parameters"
    for name, spec in data.items():
        where = f"parameters.{name}"
        why = _name_problem(name)
        if why is None:
            try:
                sources.append(_source(str(name), spec))
            except ValueError as error:
                why = str(error)
        if why is not None:
            problems[where] = why
    if not problems and not any(source.from_certificate for source in sources):
        problems["parameters"] = (
            "at least one parameter must come from the device certificate, or every device would "
            "be provisioned with the same parameters"
        )
    if problems:
        raise _invalid(problems)
    return tuple(sources)


def from_json(data: Mapping[str, Any]) -> tuple[ParameterSource, ...]:
    """A stored mapping (checked when it was stored)."""
    return parse_parameters(data)


def to_json(sources: tuple[ParameterSource, ...]) -> dict[str, dict[str, str]]:
    return {source.name: source.to_json() for source in sources}


def _name_problem(name: Any) -> str | None:
    if not isinstance(name, str) or not 1 <= len(name) <= MAX_NAME_LENGTH:
        return f"a parameter name has 1 to {MAX_NAME_LENGTH} characters"
    if _unsafe(name):
        return "a parameter name holds no NUL, control character or lone surrogate"
    return None


def _source(name: str, spec: Any) -> ParameterSource:
    if not isinstance(spec, Mapping):
        raise ValueError('must be an object: {"from": SOURCE} or {"value": TEXT}')
    keys = set(spec)
    if keys == {"value"}:
        value = spec["value"]
        if not isinstance(value, str) or len(value) > MAX_VALUE_LENGTH or _unsafe(value):
            raise ValueError(f"a fixed value is text of at most {MAX_VALUE_LENGTH} characters, no NUL")
        return ParameterSource(name, value=value)
    if keys not in ({"from"}, {"from", "pattern"}):
        raise ValueError('takes "from" (with an optional "pattern") or "value", nothing else')
    source = spec["from"]
    if source not in SOURCES:
        raise ValueError(f"'from' is one of {', '.join(SOURCES)}")
    pattern = spec.get("pattern")
    if pattern is not None:
        if not isinstance(pattern, str):
            raise ValueError("'pattern' is a regular expression (RE2)")
        try:
            groups = rules.compiled(pattern).groups
        except rules.RuleError as error:
            raise ValueError(f"'pattern': {error}") from None
        if groups != 1:
            raise ValueError("'pattern' needs exactly one capturing group: the value it takes")
    return ParameterSource(name, source=source, pattern=pattern)


def _unsafe(text: str) -> bool:
    return any(ord(c) < 0x20 or 0xD800 <= ord(c) <= 0xDFFF for c in text)


def _invalid(problems: dict[str, str]) -> InvalidInput:
    summary = "; ".join(f"{where}: {why}" for where, why in problems.items())
    return InvalidInput(summary, errors={where: [why] for where, why in problems.items()}, status=422)


def source_values(certificate: x509.Certificate, source: str) -> list[str]:
    """The certificate's values for a source, in the certificate's order."""
    if source == "subject.CN":
        return _attributes(certificate, NameOID.COMMON_NAME)
    if source == "subject.serialNumber":
        return _attributes(certificate, NameOID.SERIAL_NUMBER)
    names = extension(certificate, x509.SubjectAlternativeName)
    if names is None:
        return []
    kind = x509.UniformResourceIdentifier if source == "san.uri" else x509.DNSName
    return [str(value) for value in names.get_values_for_type(kind)]


def _attributes(certificate: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [a.value for a in certificate.subject.get_attributes_for_oid(oid) if isinstance(a.value, str)]


def values_of(certificate: x509.Certificate, sources: tuple[ParameterSource, ...]) -> dict[str, str]:
    """Every parameter's value for this device; DeviceParameterMissing naming the first that has
    none (the certificate lacks the source, or no value matches the pattern)."""
    values: dict[str, str] = {}
    for source in sources:
        if source.source is None:
            values[source.name] = source.value or ""
            continue
        value = _first(source, source_values(certificate, source.source))
        if value is None:
            how = f" matching {source.pattern}" if source.pattern is not None else ""
            raise DeviceParameterMissing(
                f"parameter '{source.name}' comes from the certificate's {source.source}, and this "
                f"certificate has no usable value there{how}"
            )
        values[source.name] = value
    return values


def _first(source: ParameterSource, candidates: list[str]) -> str | None:
    for candidate in candidates:
        if len(candidate) > MAX_VALUE_LENGTH * 4:  # bounded before any pattern runs on it
            continue
        value: str | None = candidate
        if source.pattern is not None:
            found = rules.compiled(source.pattern).search(candidate)
            value = found.group(1) if found is not None else None
        if value and len(value) <= MAX_VALUE_LENGTH and "\x00" not in value and not _surrogate(value):
            return value
    return None


def _surrogate(text: str) -> bool:
    return any(0xD800 <= ord(c) <= 0xDFFF for c in text)
