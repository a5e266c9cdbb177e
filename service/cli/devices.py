"""`devices` and `certificates`: what the service issued, as AWS IoT holds it (docs/lifecycle.md).

    devices list                     things in AWS IoT
    devices show THING               the thing, its certificates and their status, the audit trail
    devices decommission THING       detach, deactivate, delete; its enrollment may provision again
    devices rotate THING --csr FILE  a new certificate from a CSR, the old one retired after --grace
    certificates revoke|suspend|reactivate ID

Destructive commands ask first (`--yes` skips the question). Every action is in the lifecycle
audit trail as done by `cli:<user>`.
"""

from __future__ import annotations

import getpass
from datetime import timedelta
from pathlib import Path

import click

from service.cli.context import Runtime, pass_runtime
from service.cli.output import as_json, cell, fields, moment, table
from service.cli.values import DURATION
from service.lifecycle import certificates, devices, rotation, views
from service.lifecycle.devices import DeviceView

FORMATS = click.Choice(("table", "json"))


def actor() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"cli:{user}"[:64]


@click.group("devices")
def group() -> None:
    """Devices in AWS IoT: list, show, decommission, rotate."""


@group.command("list")
@click.option("--limit", type=click.IntRange(1, 250), default=50, show_default=True)
@click.option("--next", "next_token", metavar="TOKEN", help="The token a previous page printed.")
@click.option("--format", "format_", type=FORMATS, default="table")
@pass_runtime
def list_devices(runtime: Runtime, limit: int, next_token: str | None, format_: str) -> None:
    """Things in AWS IoT, a page at a time."""
    things, following = runtime.lifecycle().control().list_things(next_token, limit)
    if format_ == "json":
        click.echo(as_json({"items": [views.thing_view(t) for t in things], "next": following}))
        return
    if not things:
        click.echo("No things.")
    else:
        table(
            ("THING", "TYPE", "ATTRIBUTES"),
            [(t.thing_name, t.thing_type_name, _pairs(t.attributes)) for t in things],
        )
    if following:
        click.echo(f"more: --next {following}")


@group.command("show")
@click.argument("thing_name", metavar="THING")
@click.option("--format", "format_", type=FORMATS, default="table")
@pass_runtime
def show(runtime: Runtime, thing_name: str, format_: str) -> None:
    """The thing, its certificates and their status in AWS IoT, its enrollment, and what the
    service recorded about it (provisions, lifecycle actions)."""
    device = devices.view(runtime.lifecycle(), thing_name)
    if format_ == "json":
        click.echo(as_json(views.device_view(device)))
        return
    _print_device(device)


def _print_device(device: DeviceView) -> None:
    thing = device.thing
    entry = device.enrollment
    fields(
        [
            ("thing", thing.thing_name),
            ("type", thing.thing_type_name),
            ("attributes", _pairs(thing.attributes)),
            ("version", thing.version),
            (
                "enrollment",
                f"{entry.template} {entry.parameter}={entry.value} {entry.reprovision}, "
                f"{'enabled' if entry.enabled else 'disabled'}, provisions {entry.provisions}"
                if entry is not None
                else None,
            ),
        ]
    )
    click.echo("\ncertificates:")
    if not device.certificates:
        click.echo("  none attached")
    else:
        rows = []
        for c in device.certificates:
            retirement = device.retirements.get(c.certificate_id)
            due = f"{retirement.state} {moment(retirement.due_at)}" if retirement else None
            rows.append((c.certificate_id, c.status, c.creation_date, c.not_after, due))
        table(("CERTIFICATE", "STATUS", "CREATED", "NOT AFTER", "RETIREMENT"), rows)
    click.echo("\nprovisions (audit trail, newest first):")
    if not device.registrations:
        click.echo("  none recorded")
    else:
        table(
            ("AT", "OUTCOME", "STATUS", "KEY", "CERTIFICATE", "REQUEST"),
            [
                (r.at, r.outcome, r.http_status, r.key_id, (r.certificate_id or "")[:16], r.request_id)
                for r in device.registrations
            ],
        )
    click.echo("\nlifecycle actions (newest first):")
    if not device.events:
        click.echo("  none recorded")
    else:
        table(
            ("AT", "ACTION", "OUTCOME", "BY", "CERTIFICATE"),
            [(e.at, e.action, e.outcome, e.actor, (e.certificate_id or "")[:16]) for e in device.events],
        )


@group.command("decommission")
@click.argument("thing_name", metavar="THING")
@click.option("--yes", "-y", is_flag=True, help="Do not ask first.")
@click.option("--format", "format_", type=FORMATS, default="table")
@pass_runtime
def decommission(runtime: Runtime, thing_name: str, yes: bool, format_: str) -> None:
    """Detach, deactivate and delete the thing's certificates, delete the thing, and let its
    enrollment provision again. The device can no longer connect."""
    if not yes:
        click.confirm(
            f"Decommission {thing_name}: delete its certificates and the thing in AWS IoT?",
            abort=True,
            err=True,
        )
    done = devices.decommission(runtime.lifecycle(), thing_name, actor=actor())
    if format_ == "json":
        click.echo(as_json(views.decommissioning_view(done)))
        return
    for c in done.certificates:
        what = (
            "deleted"
            if c.get("deleted")
            else "left to the sweep"
            if c.get("sweep")
            else "detached, not deleted"
        )
        click.echo(f"certificate {c['certificateId']}: {what}")
    click.echo(f"thing {done.thing_name}: deleted")
    if done.enrollments_reopened:
        click.echo(f"enrollment: may provision again ({done.enrollments_reopened} entry reopened)")
    if done.enrollments_held:
        click.echo(f"enrollment: {done.enrollments_held} entry held by a provision right now, not reopened")


@group.command("rotate")
@click.argument("thing_name", metavar="THING")
@click.option(
    "--csr",
    "csr_file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The device's PEM certificate signing request (its key stays on the device).",
)
@click.option(
    "--grace", type=DURATION, help="Retire the old certificate after this (0s: now). Default: the setting."
)
@click.option(
    "--replacing", metavar="CERTIFICATE", help="The certificate to replace (default: every attached one)."
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="Write the new certificate here."
)
@click.option("--format", "format_", type=FORMATS, default="table")
@pass_runtime
def rotate(
    runtime: Runtime,
    thing_name: str,
    csr_file: Path,
    grace: timedelta | None,
    replacing: str | None,
    out: Path | None,
    format_: str,
) -> None:
    """A new certificate for THING from a CSR, attached with the old one's policies; the old one
    is retired (detached, deactivated, deleted) after the grace period."""
    done = rotation.rotate(
        runtime.lifecycle(),
        thing_name,
        csr_file.read_text(encoding="ascii", errors="replace"),
        grace=grace,
        replacing=replacing,
        actor=actor(),
    )
    if out is not None:
        out.write_text(done.certificate_pem)
    if format_ == "json":
        click.echo(as_json(views.rotation_view(done)))
        return
    fields(
        [
            ("thing", done.thing_name),
            ("certificate", done.certificate_id),
            ("policies", ", ".join(done.policies)),
            ("written to", out),
        ]
    )
    for certificate_id, at in done.retiring:
        state = "retired now" if certificate_id in done.retired_now else f"retired at {moment(at)}"
        click.echo(f"old certificate {certificate_id}: {state}")
    if out is None:
        click.echo(done.certificate_pem, nl=False)


@click.group("certificates", short_help="A certificate's status in AWS IoT: revoke, suspend, reactivate.")
def certificates_group() -> None:
    """A certificate's status in AWS IoT: revoke (final), suspend, reactivate."""


def _status_command(action: str, question: str | None, summary: str) -> click.Command:
    @click.argument("certificate_id", metavar="CERTIFICATE")
    @click.option("--format", "format_", type=FORMATS, default="table")
    @pass_runtime
    def command(runtime: Runtime, certificate_id: str, format_: str, yes: bool = True) -> None:
        if question is not None and not yes:
            click.confirm(question.format(certificate_id), abort=True, err=True)
        change = certificates.change_status(runtime.lifecycle(), certificate_id, action, actor=actor())
        if format_ == "json":
            click.echo(as_json(views.status_change_view(change)))
            return
        things = ", ".join(change.things) or "no thing"
        click.echo(
            f"certificate {certificate_id}: {change.previous_status} -> {change.certificate.status} "
            f"(attached to {cell(things)})"
        )

    command.__doc__ = summary
    if question is not None:
        command = click.option("--yes", "-y", is_flag=True, help="Do not ask first.")(command)
    return certificates_group.command(action)(command)


_status_command(
    "revoke",
    "Revoke {}? Devices using it are disconnected and can never use it again.",
    "REVOKED, for good: AWS IoT disconnects every device using it and refuses it from then on.",
)
_status_command(
    "suspend",
    "Suspend {}? Devices using it are disconnected until it is reactivated.",
    "INACTIVE: AWS IoT disconnects every device using it and refuses it until it is reactivated.",
)
_status_command("reactivate", None, "ACTIVE again (a suspended certificate; a revoked one stays revoked).")


def _pairs(attributes: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
