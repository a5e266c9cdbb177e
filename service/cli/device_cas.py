"""`device-cas`: manufacturer CAs registered for a template (enrollment groups of devices that
prove who they are), their block lists and CRLs. Changes reach every worker within 2 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from service.callers.devices import DeviceCaSpec, groups
from service.callers.devices.certificates import MAX_BUNDLE_BYTES, MAX_CRL_BYTES
from service.callers.devices.model import DEFAULT_MAX_CHAIN_DEPTH, MAX_CHAIN_DEPTH
from service.callers.devices.parameters import SOURCES
from service.callers.views import block_view, crl_view, device_ca_view
from service.cli.context import Runtime, now, pass_runtime
from service.cli.output import as_json, fields, listed, table, usage_cells, usage_fields
from service.cli.values import TEMPLATE
from service.errors import InvalidInput, NotFound
from service.store import Store
from service.store.device_cas import DeviceCaRecord

LIMIT = click.IntRange(1, 2**31 - 1)


@click.group("device-cas")
def group() -> None:
    """Device CAs: devices with a certificate one issued provision its template without an API key."""


def _pairs(option: str, values: tuple[str, ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for item in values:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise InvalidInput(f"{option} takes NAME=VALUE, got {item!r}")
        if name in found:
            raise InvalidInput(f"{option} names parameter {name!r} twice")
        found[name] = value
    return found


def _parameters(
    sources: tuple[str, ...], patterns: tuple[str, ...], values: tuple[str, ...]
) -> dict[str, Any]:
    taken, captured, fixed = (
        _pairs("--from", sources),
        _pairs("--pattern", patterns),
        _pairs("--value", values),
    )
    for name in captured:
        if name not in taken:
            raise InvalidInput(f"--pattern {name}=... needs --from {name}=SOURCE")
    both = set(taken) & set(fixed)
    if both:
        raise InvalidInput(f"parameter(s) {', '.join(sorted(both))} given both --from and --value")
    parameters: dict[str, Any] = {}
    for name, source in taken.items():
        parameters[name] = {"from": source, **({"pattern": captured[name]} if name in captured else {})}
    for name, value in fixed.items():
        parameters[name] = {"value": value}
    return parameters


_parameter_options = [
    click.option(
        "--from",
        "sources",
        multiple=True,
        metavar="NAME=SOURCE",
        help=f"Template parameter NAME from the device certificate ({', '.join(SOURCES)}); repeat.",
    ),
    click.option(
        "--pattern",
        "patterns",
        multiple=True,
        metavar="NAME=REGEX",
        help="For a --from parameter: an RE2 expression with one capturing group, its capture the value.",
    ),
    click.option("--value", "values", multiple=True, metavar="NAME=TEXT", help="A fixed parameter value."),
]


def _with_parameter_options(command: Any) -> Any:
    for option in reversed(_parameter_options):
        command = option(command)
    return command


@group.command("register")
@click.option("--template", type=TEMPLATE, required=True, help="The template its devices provision.")
@click.option(
    "--certificates",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    required=True,
    help="PEM: the CA first, then its chain (with the intermediates between it and its devices).",
)
@_with_parameter_options
@click.option("--name", default="", help="What the group is (shown in lists).")
@click.option("--reprovision", type=click.Choice(["once", "allow"]), default="once", show_default=True)
@click.option("--disabled", is_flag=True, help="Registered, but refusing its devices until enabled.")
@click.option(
    "--max-chain-depth",
    type=click.IntRange(0, MAX_CHAIN_DEPTH),
    default=DEFAULT_MAX_CHAIN_DEPTH,
    show_default=True,
    help="CA certificates allowed between a device certificate and this CA.",
)
@click.option("--max-provisions", type=LIMIT, help="The group's quota of provisions.")
@click.option("--rate", type=LIMIT, help="Requests per minute of all its devices.")
@click.option("--json", "as_json_", is_flag=True, help="The admin API's object.")
@pass_runtime
def register(
    runtime: Runtime,
    template: str,
    certificates: Path,
    sources: tuple[str, ...],
    patterns: tuple[str, ...],
    values: tuple[str, ...],
    name: str,
    reprovision: str,
    disabled: bool,
    max_chain_depth: int,
    max_provisions: int | None,
    rate: int | None,
    as_json_: bool,
) -> None:
    """Register a manufacturer CA (root or intermediate) for a template."""
    if certificates.stat().st_size > MAX_BUNDLE_BYTES:
        raise InvalidInput(f"--certificates: over {MAX_BUNDLE_BYTES} bytes")
    spec = DeviceCaSpec(
        template=template,
        certificates=certificates.read_text(encoding="utf-8", errors="surrogateescape"),
        parameters=_parameters(sources, patterns, values),
        name=name,
        reprovision=reprovision,
        enabled=not disabled,
        max_chain_depth=max_chain_depth,
        max_provisions=max_provisions,
        rate_per_minute=rate,
    )
    store = runtime.store()
    record = groups.register(store.device_cas, spec, now())
    if as_json_:
        click.echo(as_json(device_ca_view(record)))
        return
    click.echo(f"Registered device CA {record.ca_id} for template '{record.template}': {record.subject}")


@group.command("list")
@click.option("--template", type=TEMPLATE, help="Only this template's.")
@click.option("--json", "as_json_", is_flag=True, help="A JSON array (the admin API's objects).")
@pass_runtime
def list_(runtime: Runtime, template: str | None, as_json_: bool) -> None:
    """Every registered device CA, oldest first."""
    records = runtime.store().device_cas.list(template)
    empty = "No device CAs yet: python -m service device-cas register --template T --certificates CA.pem"
    if listed(records, as_json_, device_ca_view, empty):
        return
    headers = ("ID", "NAME", "TEMPLATE", "STATE", "REPROVISION", "PROVISIONS", "RATE", "SUBJECT")
    table(headers, [_row(r) for r in records])


def _row(record: DeviceCaRecord) -> tuple[object, ...]:
    return (
        record.ca_id,
        record.name,
        record.template,
        "enabled" if record.enabled else "disabled",
        record.reprovision,
        *usage_cells(record),
        record.subject,
    )


def _get(store: Store, ca_id: str) -> DeviceCaRecord:
    record = store.device_cas.get(ca_id)
    if record is None:
        raise NotFound(f"no device CA with id {ca_id!r}")
    return record


@group.command("show")
@click.argument("ca_id", metavar="ID")
@click.option("--json", "as_json_", is_flag=True, help="The admin API's object (with blocks and CRL).")
@pass_runtime
def show(runtime: Runtime, ca_id: str, as_json_: bool) -> None:
    """One device CA: its parameters, policy, limits, block list and CRL."""
    store = runtime.store()
    record = _get(store, ca_id)
    blocks, crl = store.device_cas.blocks(ca_id), store.device_cas.crl(ca_id)
    if as_json_:
        view = device_ca_view(record)
        view["blocks"] = [block_view(b) for b in blocks]
        view["crl"] = crl_view(crl) if crl is not None else None
        click.echo(as_json(view))
        return
    sources = ", ".join(f"{name}={_source_text(spec)}" for name, spec in record.parameters.items())
    fields(
        [
            ("id", record.ca_id),
            ("name", record.name),
            ("template", record.template),
            ("subject", record.subject),
            ("sha-256", record.fingerprint_sha256),
            ("parameters", sources or "none (the request names them all)"),
            ("state", "enabled" if record.enabled else "disabled"),
            ("reprovision", record.reprovision),
            ("max chain depth", record.max_chain_depth),
            *usage_fields(record),
            ("blocked", ", ".join(f"{b.kind} {b.value}" for b in blocks) or "none"),
            ("crl", f"{crl.issuer}, {crl.revoked} revoked, next update {crl.next_update}" if crl else "none"),
            ("created", record.created_at),
            ("updated", record.updated_at),
        ]
    )


def _source_text(spec: Any) -> str:
    if isinstance(spec, dict) and "from" in spec:
        pattern = spec.get("pattern")
        return f"{spec['from']}" + (f" ~ {pattern}" if pattern else "")
    return repr(spec.get("value")) if isinstance(spec, dict) else repr(spec)


@group.command("change")
@click.argument("ca_id", metavar="ID")
@_with_parameter_options
@click.option("--name", default=None, help="A new name.")
@click.option("--reprovision", type=click.Choice(["once", "allow"]), default=None)
@click.option("--enable/--disable", "enabled", default=None, help="Let its devices in, or refuse them all.")
@click.option("--max-chain-depth", type=click.IntRange(0, MAX_CHAIN_DEPTH), default=None)
@click.option("--max-provisions", type=LIMIT, default=None, help="A new quota.")
@click.option("--no-max-provisions", is_flag=True, help="No quota.")
@click.option("--rate", type=LIMIT, default=None, help="A new rate per minute.")
@click.option("--no-rate", is_flag=True, help="No rate limit.")
@pass_runtime
def change(
    runtime: Runtime,
    ca_id: str,
    sources: tuple[str, ...],
    patterns: tuple[str, ...],
    values: tuple[str, ...],
    name: str | None,
    reprovision: str | None,
    enabled: bool | None,
    max_chain_depth: int | None,
    max_provisions: int | None,
    no_max_provisions: bool,
    rate: int | None,
    no_rate: bool,
) -> None:
    """Change a device CA: its parameters (all of them, when any is given), policy, state, limits."""
    changes: dict[str, Any] = {}
    if sources or patterns or values:
        changes["parameters"] = _parameters(sources, patterns, values)
    for key, value in (
        ("name", name),
        ("reprovision", reprovision),
        ("enabled", enabled),
        ("max_chain_depth", max_chain_depth),
        ("max_provisions", max_provisions),
        ("rate_per_minute", rate),
    ):
        if value is not None:
            changes[key] = value
    if no_max_provisions:
        changes["max_provisions"] = None
    if no_rate:
        changes["rate_per_minute"] = None
    if not changes:
        raise InvalidInput("nothing to change: give at least one option")
    store = runtime.store()
    if not groups.change(store.device_cas, ca_id, changes, now()):
        raise NotFound(f"no device CA with id {ca_id!r}")
    click.echo(f"Changed device CA {ca_id}: {', '.join(sorted(changes))} (every worker within 2 s)")


@group.command("delete")
@click.argument("ca_id", metavar="ID")
@click.option("--yes", is_flag=True, help="Do not ask.")
@pass_runtime
def delete(runtime: Runtime, ca_id: str, yes: bool) -> None:
    """Remove a device CA, its block list and CRL: its devices are unknown from then on."""
    store = runtime.store()
    record = _get(store, ca_id)
    if not yes:
        click.confirm(
            f"Delete device CA {ca_id} ({record.subject}, template '{record.template}')?", abort=True
        )
    store.device_cas.delete(ca_id)
    click.echo(f"Deleted device CA {ca_id}")


def _block_target(serial: str | None, fingerprint: str | None) -> tuple[str, str]:
    if (serial is None) == (fingerprint is None):
        raise InvalidInput("give one of --serial or --fingerprint")
    return ("serial", serial) if serial is not None else ("fingerprint", fingerprint or "")


@group.command("block")
@click.argument("ca_id", metavar="ID")
@click.option("--serial", help="The device serial (its certificate subject's serialNumber or CN).")
@click.option("--fingerprint", help="The SHA-256 of a certificate of its chain (hex, colons allowed).")
@click.option("--reason", default="", help="Why (kept with the block).")
@pass_runtime
def block(runtime: Runtime, ca_id: str, serial: str | None, fingerprint: str | None, reason: str) -> None:
    """Block one device of the group: its requests are refused (every worker within 2 s)."""
    kind, value = _block_target(serial, fingerprint)
    store = runtime.store()
    try:
        added = groups.block(store.device_cas, ca_id, kind, value, now(), reason)
    except LookupError:
        raise NotFound(f"no device CA with id {ca_id!r}") from None
    kind, value = groups.normalized_block(kind, value)
    click.echo(f"{'Blocked' if added else 'Already blocked'}: {kind} {value} in device CA {ca_id}")


@group.command("unblock")
@click.argument("ca_id", metavar="ID")
@click.option("--serial", help="The device serial.")
@click.option("--fingerprint", help="The certificate's SHA-256 fingerprint.")
@pass_runtime
def unblock(runtime: Runtime, ca_id: str, serial: str | None, fingerprint: str | None) -> None:
    """Unblock a device."""
    kind, value = groups.normalized_block(*_block_target(serial, fingerprint))
    if not runtime.store().device_cas.unblock(ca_id, kind, value, now()):
        raise NotFound(f"device CA {ca_id} has no block of {kind} {value!r}")
    click.echo(f"Unblocked: {kind} {value} in device CA {ca_id}")


@group.group("crl")
def crl_group() -> None:
    """The manufacturer's CRL of a device CA: load (or replace), drop."""


@crl_group.command("load")
@click.argument("ca_id", metavar="ID")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@pass_runtime
def load_crl(runtime: Runtime, ca_id: str, file: Path) -> None:
    """Load FILE (PEM or DER), signed by the CA or a certificate of its PEM."""
    if file.stat().st_size > MAX_CRL_BYTES * 2:
        raise InvalidInput(f"the CRL is over {MAX_CRL_BYTES} bytes")
    try:
        stored = groups.put_crl(runtime.store().device_cas, ca_id, file.read_bytes(), now())
    except LookupError:
        raise NotFound(f"no device CA with id {ca_id!r}") from None
    click.echo(f"Loaded the CRL of {stored.issuer} into device CA {ca_id}: {stored.revoked} revoked")


@crl_group.command("drop")
@click.argument("ca_id", metavar="ID")
@pass_runtime
def drop_crl(runtime: Runtime, ca_id: str) -> None:
    """Drop the CA's CRL."""
    if not runtime.store().device_cas.drop_crl(ca_id, now()):
        raise NotFound(f"device CA {ca_id} has no CRL")
    click.echo(f"Dropped the CRL of device CA {ca_id}")
