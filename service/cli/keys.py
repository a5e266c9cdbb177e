"""`keys`: API keys created (the key shown once, on stdout), listed, shown and revoked."""

from __future__ import annotations

from datetime import datetime

import click

from service.callers import keys
from service.callers.model import ROLES, KeySpec, Scope
from service.callers.views import key_view
from service.cli.context import Runtime, now, pass_runtime
from service.cli.output import as_json, fields, listed, moment, table, usage_cells, usage_fields
from service.cli.values import RULE, TEMPLATE, Moment
from service.errors import InvalidInput, NotFound
from service.store import KeyRecord, Store


@click.group("keys")
def group() -> None:
    """API keys: create (the key is shown once), list, show, revoke."""


@group.command("create")
@click.option("--role", type=click.Choice(ROLES), default="provision", show_default=True)
@click.option("--name", default="", help="What the key is for (shown in lists and the audit trail).")
@click.option("--template", "templates", type=TEMPLATE, multiple=True, help="Allowed template (repeat).")
@click.option("--rule", "rules", type=RULE, multiple=True, help="Parameter NAME must fully match REGEX.")
@click.option("--csr-only", is_flag=True, help="Refuse server-generated keys: devices send a CSR.")
@click.option("--enrolled-only", is_flag=True, help="Only devices on the enrollment list.")
@click.option("--max-provisions", type=click.IntRange(1, 10**9), help="Provisions in the key's life.")
@click.option("--rate", type=click.IntRange(1, 10**6), help="Requests per minute.")
@click.option("--expires", type=Moment(ahead=True), help="2027-01-01T00:00:00Z, or from now: 30d, 12h.")
@click.option("--quiet", "-q", is_flag=True, help="Print the key only: KEY=$(... --quiet).")
@pass_runtime
def create(
    runtime: Runtime,
    role: str,
    name: str,
    templates: tuple[str, ...],
    rules: tuple[tuple[str, str], ...],
    csr_only: bool,
    enrolled_only: bool,
    max_provisions: int | None,
    rate: int | None,
    expires: datetime | None,
    quiet: bool,
) -> None:
    """Create an API key and print it: this is the only time it is shown."""
    if len(name) > 200:
        raise InvalidInput("--name has at most 200 characters")
    names = [rule_name for rule_name, _ in rules]
    if len(set(names)) < len(names):
        raise InvalidInput("--rule names a parameter twice; give one pattern per parameter")
    at = now()
    if expires is not None and expires <= at:
        raise InvalidInput(f"--expires {moment(expires)} is in the past")
    spec = KeySpec(
        role=role,
        name=name,
        scope=Scope(
            templates=templates or None,
            parameter_rules=dict(rules),
            server_keys=not csr_only,
            enrolled_only=enrolled_only,
        ),
        expires_at=expires,
        max_provisions=max_provisions,
        rate_per_minute=rate,
    )
    record, token = keys.issue(runtime.store(), spec, at)
    if quiet:
        click.echo(token)
        return
    label = f", {name!r}" if name else ""
    click.echo(f"Created API key {record.key_id} ({record.role}{label}):")
    click.echo(f"\n    {token}\n")
    click.echo("Store it now: it will not be shown again (the service keeps only its hash).")


@group.command("list")
@click.option("--json", "as_json_", is_flag=True, help="A JSON array (the admin API's key objects).")
@pass_runtime
def list_(runtime: Runtime, as_json_: bool) -> None:
    """Every key with its state and usage, oldest first."""
    records, at = runtime.store().keys.list(), now()
    empty = "No API keys yet: python -m service keys create --name NAME"
    if listed(records, as_json_, lambda r: key_view(r, at), empty):
        return
    headers = ("ID", "NAME", "ROLE", "STATE", "PROVISIONS", "RATE", "LAST USED", "EXPIRES")
    table(headers, [_row(r, at) for r in records])


def _row(record: KeyRecord, at: datetime) -> tuple[object, ...]:
    view = key_view(record, at)
    return (
        record.key_id,
        record.name,
        record.role,
        view["state"],
        *usage_cells(record),
        record.last_used_at,
        record.expires_at,
    )


@group.command("show")
@click.argument("key_id", metavar="ID")
@click.option("--json", "as_json_", is_flag=True, help="The admin API's key object.")
@pass_runtime
def show(runtime: Runtime, key_id: str, as_json_: bool) -> None:
    """One key: its scope, limits and usage (never its secret)."""
    record = _get(runtime.store(), key_id)
    view = key_view(record, now())
    if as_json_:
        click.echo(as_json(view))
        return
    scope = Scope.from_json(record.scope)
    rules = ", ".join(f"{k}={v}" for k, v in scope.parameter_rules.items())
    fields(
        [
            ("id", record.key_id),
            ("name", record.name),
            ("role", record.role),
            ("state", view["state"]),
            ("templates", ", ".join(scope.templates) if scope.templates is not None else "any"),
            ("rules", rules or "none"),
            ("server keys", "allowed" if scope.server_keys else "refused (CSR only)"),
            ("enrolled only", "yes" if scope.enrolled_only else "no"),
            *usage_fields(record),
            ("created", record.created_at),
            ("last used", record.last_used_at),
            ("expires", record.expires_at or "never"),
            ("revoked", record.revoked_at),
        ]
    )


@group.command("revoke")
@click.argument("key_id", metavar="ID")
@pass_runtime
def revoke(runtime: Runtime, key_id: str) -> None:
    """Revoke a key (ID, or the whole key): the service refuses it from its next request on."""
    store = runtime.store()
    record = _get(store, key_id)
    if record.revoked_at is not None:
        click.echo(f"API key {record.key_id} was already revoked at {moment(record.revoked_at)}.")
        return
    store.keys.revoke(record.key_id, now())
    click.echo(f"Revoked API key {record.key_id}.")


def _get(store: Store, key_id: str) -> KeyRecord:
    # The whole key is accepted too (revoking a leaked key), but only its id is ever echoed.
    prefix = f"{keys.PREFIX}_"
    if key_id.startswith(prefix):
        key_id = key_id[len(prefix) :].partition("_")[0]
    record = store.keys.get(key_id)
    if record is None:
        raise NotFound(f"no API key with id {key_id[:20]!r} (python -m service keys list shows them)")
    return record
