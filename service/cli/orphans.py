"""`orphans` and `reconcile`: certificates the service must take out of AWS IoT, and the audit trail
against AWS IoT (docs/lifecycle.md).

    orphans [--state pending] [--format table|json|csv]   the report: what was recorded and how it ended
    orphans sweep                                         retire every due certificate now
    reconcile [--since 7d] [--format table|json|csv]      the differences both ways

CSV has a header row of the JSON field names; a text cell a spreadsheet would run as a formula
starts with an apostrophe (as `audit --format csv`).
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import click

from service.cli.context import Runtime, pass_runtime
from service.cli.devices import actor
from service.cli.output import as_json, csv_cell, moment, table
from service.cli.values import Moment
from service.errors import ServiceError
from service.lifecycle import orphans, reconcile, views
from service.store.lifecycle import KINDS, STATES, Retirement

PAGE = 1000
FORMATS = click.Choice(("table", "json", "csv"))


@click.group(
    "orphans",
    invoke_without_command=True,
    short_help="Certificates got from AWS and not handed out, retirements; orphans sweep.",
)
@click.option("--state", type=click.Choice(STATES), help="Only these (pending: not retired yet).")
@click.option(
    "--kind",
    type=click.Choice(KINDS),
    help="orphan: never handed out; retirement: replaced or decommissioned.",
)
@click.option("--thing", "thing_name", metavar="NAME", help="Only this thing's.")
@click.option("--format", "format_", type=FORMATS, default="table")
@click.pass_context
def group(
    ctx: click.Context, state: str | None, kind: str | None, thing_name: str | None, format_: str
) -> None:
    """The orphan report: every certificate the service got from AWS IoT and did not hand out, and
    every one it retires (rotated, decommissioned), with how each ended.

    `orphans sweep` retires every due one now (the service's workers sweep every
    PROVISIONER_ORPHAN_SWEEP_SECONDS by themselves)."""
    if ctx.invoked_subcommand is not None:
        return
    records = ctx.ensure_object(Runtime).lifecycle().records()
    rows = _all(records.page, state=state, kind=kind, thing_name=thing_name)
    if format_ == "json":
        _json_array(views.retirement_view(r) for r in rows)
    elif format_ == "csv":
        _csv(views.RETIREMENT_FIELDS, (views.retirement_view(r) for r in rows))
    else:
        listed = list(rows)
        if not listed:
            click.echo("No certificates recorded.")
        else:
            table(
                ("CERTIFICATE", "KIND", "REASON", "STATE", "THING", "RECORDED", "DUE", "TRIES", "LAST ERROR"),
                [
                    (
                        r.certificate_id,
                        r.kind,
                        r.reason,
                        r.state,
                        r.thing_name,
                        r.recorded_at,
                        r.due_at if r.state == "pending" else r.done_at,
                        r.attempts,
                        (r.last_error or "")[:60],
                    )
                    for r in listed
                ],
            )
        counts = records.counts()
        summary = ", ".join(f"{k} {s}: {n}" for (k, s), n in sorted(counts.items()))
        click.echo(f"\n{summary or 'nothing recorded'}")


def _all(page: Any, **where: Any) -> Iterator[Retirement]:
    after = ""
    while True:
        rows: list[Retirement] = page(after=after, limit=PAGE, **where)
        yield from rows
        if len(rows) < PAGE:
            return
        after = rows[-1].certificate_id


@group.command("sweep")
@pass_runtime
def sweep(runtime: Runtime) -> None:
    """Retire every due certificate now: detach it from its things, deactivate it, delete it.
    Exit 1 when AWS IoT's control plane cannot be used or a certificate could not be retired."""
    report = orphans.sweep(runtime.lifecycle(), actor=actor())
    if report.unavailable is not None:
        raise ServiceError(report.unavailable)
    click.echo(
        f"retired {len(report.retired)}, gone already {len(report.gone)}, "
        f"kept (handed out) {len(report.kept)}, failed {len(report.failed)}"
    )
    for certificate_id, error in report.failed.items():
        click.echo(f"  {certificate_id}: {error}", err=True)
    if report.failed:
        raise click.exceptions.Exit(1)


@click.command("reconcile", short_help="The audit trail against AWS IoT: the differences both ways.")
@click.option(
    "--since",
    type=Moment(ahead=False),
    help="Only what was issued or created since: ISO 8601, or ago: 7d (default: the audit trail's start).",
)
@click.option("--format", "format_", type=FORMATS, default="table")
@pass_runtime
def reconcile_command(runtime: Runtime, since: datetime | None, format_: str) -> None:
    """The audit trail against AWS IoT: certificates handed out here that AWS no longer has or
    holds in another status, things gone, and certificates AWS holds that the audit trail does
    not know. Exit 0 either way: the differences are the output."""
    result = reconcile.reconcile(runtime.lifecycle(), since)
    rows = [views.difference_view(d) for d in result.differences]
    if format_ == "json":
        click.echo(as_json(views.reconciliation_view(result)))
    elif format_ == "csv":
        _csv(views.DIFFERENCE_FIELDS, rows)
    else:
        click.echo(
            f"since {moment(result.since)}: {result.issued_here} certificate(s) issued here, "
            f"{result.certificates_in_aws} in AWS IoT, {len(rows)} difference(s)"
        )
        if rows:
            table(
                ("KIND", "CERTIFICATE", "THING", "AWS", "EXPECTED", "AT", "DETAIL"),
                [
                    (
                        d.kind,
                        d.certificate_id,
                        d.thing_name,
                        d.aws_status,
                        d.expected_status,
                        d.at,
                        d.detail,
                    )
                    for d in result.differences
                ],
            )


def _json_array(items: Iterable[Mapping[str, Any]]) -> None:
    # Streamed, one object a line: an array of any length without holding it all.
    click.echo("[")
    previous = None
    for item in items:
        if previous is not None:
            click.echo(previous + ",")
        previous = json.dumps(item, ensure_ascii=False)
    if previous is not None:
        click.echo(previous)
    click.echo("]")


def _csv(fieldnames: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> None:
    writer = csv.DictWriter(sys.stdout, fieldnames=list(fieldnames), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: "" if v is None else csv_cell(v) for k, v in row.items()})
