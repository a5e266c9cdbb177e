"""Registering device CAs (enrollment groups), their block lists and CRLs: checked here, stored by
service.store.device_cas. Every refusal is an InvalidInput (422) naming its field."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from cryptography.hazmat.primitives.serialization import Encoding

from service.callers.devices.certificates import fingerprint, load_ca_bundle, load_crl
from service.callers.devices.model import DEFAULT_MAX_CHAIN_DEPTH, MAX_CHAIN_DEPTH
from service.callers.devices.parameters import parse_parameters, to_json
from service.errors import InvalidInput
from service.store.device_cas import (
    BLOCK_KINDS,
    REPROVISION,
    CrlRecord,
    DeviceCaQueries,
    DeviceCaRecord,
    DuplicateDeviceCa,
)

_TEMPLATE_CHARACTERS = frozenset(string.ascii_letters + string.digits + "_-")
_HEX = frozenset("0123456789abcdef")
MAX_NAME_LENGTH = 200
MAX_BLOCK_VALUE_LENGTH = 256
_T = TypeVar("_T")


@dataclass(frozen=True)
class DeviceCaSpec:
    """What an operator asks for when registering a device CA."""

    template: str
    certificates: str  # PEM: the CA (root or intermediate) first, then its chain if wanted
    parameters: Mapping[str, Any] = field(default_factory=dict)  # see parameters.py
    name: str = ""
    reprovision: str = "once"
    enabled: bool = True
    max_chain_depth: int = DEFAULT_MAX_CHAIN_DEPTH
    max_provisions: int | None = None
    rate_per_minute: int | None = None


def register(queries: DeviceCaQueries, spec: DeviceCaSpec, now: datetime) -> DeviceCaRecord:
    """Check and store a device CA; the stored record."""
    problems = _settings_problems(
        {
            "name": spec.name,
            "template": spec.template,
            "reprovision": spec.reprovision,
            "enabled": spec.enabled,
            "max_chain_depth": spec.max_chain_depth,
            "max_provisions": spec.max_provisions,
            "rate_per_minute": spec.rate_per_minute,
        }
    )
    sources = _collect(problems, lambda: parse_parameters(spec.parameters))
    certificates = _collect(problems, lambda: load_ca_bundle(spec.certificates))
    if problems:
        raise _invalid(problems)
    assert sources is not None and certificates is not None
    anchor = certificates[0]
    record = DeviceCaRecord(
        ca_id="c" + secrets.token_hex(6),
        name=spec.name,
        template=spec.template,
        certificates=spec.certificates.strip() + "\n",
        fingerprint_sha256=fingerprint(anchor),
        subject=anchor.subject.rfc4514_string()[:1024],
        parameters=to_json(sources),
        reprovision=spec.reprovision,
        enabled=spec.enabled,
        max_chain_depth=spec.max_chain_depth,
        max_provisions=spec.max_provisions,
        rate_per_minute=spec.rate_per_minute,
        provisions=0,
        revision=1,
        created_at=now,
        updated_at=now,
    )
    try:
        queries.insert(record)
    except DuplicateDeviceCa:
        raise _invalid(
            {
                "certificates": f"this CA ({record.subject}) is already registered for "
                f"template '{spec.template}'"
            }
        ) from None
    return record


def change(queries: DeviceCaQueries, ca_id: str, changes: Mapping[str, Any], now: datetime) -> bool:
    """Change a CA's name, parameters, policy, state or limits; False when there is no such CA."""
    settable = {"name", "reprovision", "enabled", "max_chain_depth", "max_provisions", "rate_per_minute"}
    unknown = set(changes) - settable - {"parameters"}
    problems = {name: "cannot be changed (register another CA instead)" for name in sorted(unknown)}
    problems.update(_settings_problems({k: v for k, v in changes.items() if k in settable}))
    values = {k: v for k, v in changes.items() if k in settable}
    if "parameters" in changes:
        sources = _collect(problems, lambda: parse_parameters(changes["parameters"]))
        if sources is not None:
            values["parameters"] = to_json(sources)
    if problems:
        raise _invalid(problems)
    return queries.update(ca_id, now, values)


def block(
    queries: DeviceCaQueries, ca_id: str, kind: str, value: str, now: datetime, reason: str = ""
) -> bool:
    """Block one device of a group, by its serial (the subject's serialNumber or CN) or the SHA-256
    fingerprint of its certificate (hex, colons allowed). False when already blocked; LookupError
    when there is no such CA."""
    kind, value = normalized_block(kind, value)
    if len(reason) > MAX_NAME_LENGTH:
        raise _invalid({"reason": f"at most {MAX_NAME_LENGTH} characters"})
    return queries.block(ca_id, kind, value, now, reason)


def normalized_block(kind: str, value: str) -> tuple[str, str]:
    if kind not in BLOCK_KINDS:
        raise _invalid({"kind": f"one of {', '.join(BLOCK_KINDS)}"})
    if kind == "fingerprint":
        digest = value.replace(":", "").strip().lower()
        if len(digest) != 64 or not set(digest) <= _HEX:
            raise _invalid({"value": "a SHA-256 fingerprint: 64 hexadecimal digits (colons allowed)"})
        return kind, digest
    if not 1 <= len(value) <= MAX_BLOCK_VALUE_LENGTH or "\x00" in value:
        raise _invalid({"value": f"a device serial of 1 to {MAX_BLOCK_VALUE_LENGTH} characters"})
    return kind, value


def put_crl(queries: DeviceCaQueries, ca_id: str, data: bytes | str, now: datetime) -> CrlRecord:
    """Load (or replace) a CA's CRL: it must be signed by the CA or a certificate of its PEM.
    LookupError when there is no such CA."""
    record = queries.get(ca_id)
    if record is None:
        raise LookupError(ca_id)
    crl, _signer = load_crl(data, load_ca_bundle(record.certificates))
    stored = CrlRecord(
        ca_id=ca_id,
        crl=crl.public_bytes(Encoding.DER),
        issuer=crl.issuer.rfc4514_string()[:1024],
        this_update=crl.last_update_utc,
        next_update=crl.next_update_utc,
        revoked=len(crl),
        loaded_at=now,
    )
    if not queries.put_crl(stored):
        raise LookupError(ca_id)
    return stored


def _settings_problems(values: Mapping[str, Any]) -> dict[str, str]:
    problems = {}
    if "name" in values:
        name = values["name"]
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or "\x00" in name:
            problems["name"] = f"text of at most {MAX_NAME_LENGTH} characters"
    if "template" in values:
        template = values["template"]
        if (
            not isinstance(template, str)
            or not 1 <= len(template) <= 36
            or not set(template) <= _TEMPLATE_CHARACTERS
        ):
            problems["template"] = "1 to 36 of [0-9A-Za-z_-]"
    if "reprovision" in values and values["reprovision"] not in REPROVISION:
        problems["reprovision"] = f"one of {', '.join(REPROVISION)}"
    if "enabled" in values and not isinstance(values["enabled"], bool):
        problems["enabled"] = "true or false"
    if "max_chain_depth" in values and not _whole(values["max_chain_depth"], 0, MAX_CHAIN_DEPTH):
        problems["max_chain_depth"] = f"a whole number from 0 to {MAX_CHAIN_DEPTH}"
    for limit in ("max_provisions", "rate_per_minute"):
        if limit in values and values[limit] is not None and not _whole(values[limit], 1, 2**31 - 1):
            problems[limit] = "a whole number of at least 1, or null for no limit"
    return problems


def _whole(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _collect(problems: dict[str, str], parse: Callable[[], _T]) -> _T | None:
    try:
        return parse()
    except InvalidInput as error:
        for where, messages in (error.extra.get("errors") or {}).items():
            problems[where] = " ".join(messages)
        return None


def _invalid(problems: Mapping[str, str]) -> InvalidInput:
    summary = "; ".join(f"{where}: {why}" for where, why in problems.items())
    return InvalidInput(summary, errors={where: [why] for where, why in problems.items()}, status=422)
