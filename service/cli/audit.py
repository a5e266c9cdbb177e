"""`audit`: the registration records (one per POST /provision), newest first; `audit prune`.

Formats: `table` (default), `json` (one JSON array of the admin API's registration objects,
written as the records are read), `csv` (header: the same field names; parameters as JSON; a
text cell that a spreadsheet would run as a formula starts with an apostrophe).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import click

from service.audit import Audit
from service.callers.views import REGISTRATION_FIELDS, registration_view
from service.cli.context import Runtime, now, pass_runtime
from service.cli.output import csv_cell, table
from service.cli.values import Moment
from service.errors import InvalidInput
from service.store import Registration, RegistrationFilter, Store

OUTCOMES = ("provisioned", "refused", "failed", "replayed")
PAGE = 1000


@click.group("audit", invoke_without_command=True, short_help="The audit trail, newest first; audit prune.")
@click.option("--since", type=Moment(ahead=False), help="From this time on: ISO 8601, or ago: 1h, 7d.")
@click.option("--until", type=Moment(ahead=False), help="Before this time: ISO 8601, or ago: 1h, 7d.")
@click.option("--key", "key_id", metavar="ID", help="Only this API key's requests.")
@click.option("--template", help="Only this template.")
@click.option("--thing", "thing_name", metavar="NAME", help="Only this thing.")
@click.option("--outcome", type=click.Choice(OUTCOMES))
@click.option("--device-ca", "device_ca_id", metavar="ID", help="Only this device CA's devices.")
@click.option("--device", "device_fingerprint", metavar="SHA256", help="Only this device certificate's.")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="0: every record.")
@click.option("--format", "format_", type=click.Choice(("table", "json", "csv")), default="table")
@click.pass_context
def group(
    ctx: click.Context,
    since: datetime | None,
    until: datetime | None,
    key_id: str | None,
    template: str | None,
    thing_name: str | None,
    outcome: str | None,
    device_ca_id: str | None,
    device_fingerprint: str | None,
    limit: int,
    format_: str,
) -> None:
    """The audit trail: one record per provisioning request, newest first.

    --format json writes one JSON array; csv has a header row of the field names.
    `audit prune` removes what is past PROVISIONER_AUDIT_RETENTION_DAYS.
    """
    if ctx.invoked_subcommand is not None:
        return
    if since is not None and until is not None and since >= until:
        raise InvalidInput("--since must be before --until")
    fingerprint = device_fingerprint.replace(":", "").lower() if device_fingerprint else None
    where = RegistrationFilter(since, until, key_id, template, thing_name, outcome, device_ca_id, fingerprint)
    records = _records(ctx.ensure_object(Runtime).store(), where, limit)
    {"table": _table, "json": _json, "csv": _csv}[format_](records)


def _records(store: Store, where: RegistrationFilter, limit: int) -> Iterator[Registration]:
    before, left = None, limit or None
    while True:
        size = PAGE if left is None else min(PAGE, left)
        page = store.registrations.page(where, before, size)
        yield from page
        if left is not None:
            left -= len(page)
        if len(page) < size or left == 0:
            return
        before = page[-1].id


def _table(records: Iterator[Registration]) -> None:
    rows = [
        (
            r.at,
            r.outcome,
            r.http_status,
            r.key_id or (f"device:{r.device_ca_id}" if r.device_ca_id else None),
            r.template,
            r.thing_name,
            r.problem or r.aws_error_code,
            f"{r.duration_ms:.0f}",
            r.request_id,
        )
        for r in records
    ]
    if not rows:
        click.echo("No registration records match.")
        return
    table(("AT", "OUTCOME", "STATUS", "KEY", "TEMPLATE", "THING", "PROBLEM", "MS", "REQUEST"), rows)


def _json(records: Iterator[Registration]) -> None:
    # Streamed, one record a line: an array of any length without holding it all.
    click.echo("[")
    previous = None
    for record in records:
        if previous is not None:
            click.echo(previous + ",")
        previous = json.dumps(registration_view(record), ensure_ascii=False)
    if previous is not None:
        click.echo(previous)
    click.echo("]")


def _csv(records: Iterator[Registration]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=REGISTRATION_FIELDS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: _csv_value(v) for k, v in registration_view(record).items()})


def _csv_value(value: Any) -> Any:
    if isinstance(value, dict):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return "" if value is None else csv_cell(value)


@group.command("prune")
@pass_runtime
def prune(runtime: Runtime) -> None:
    """Remove records older than PROVISIONER_AUDIT_RETENTION_DAYS and expired idempotency records."""
    days = runtime.settings.audit_retention_days
    removed = Audit(runtime.store(), retention=timedelta(days=days)).prune(now())
    click.echo(f"removed {removed} record(s) (registrations older than {days:g} days, expired idempotency)")
