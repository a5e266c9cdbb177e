"""`enrollments`: the allowlist of devices per template, imported from CSV or changed one by one."""

from __future__ import annotations

from typing import IO, NoReturn

import click

from service.callers import enrollment_csv
from service.callers.views import enrollment_view
from service.cli.context import Runtime, now, pass_runtime
from service.cli.output import listed, table
from service.cli.values import PARAMETER, TEMPLATE
from service.errors import InvalidInput, NotFound
from service.store import EnrollmentRecord, Store

PAGE = 1000

template_option = click.option("--template", type=TEMPLATE, required=True, help="The template's name.")
parameter_option = click.option(
    "--parameter",
    type=PARAMETER,
    default="SerialNumber",
    show_default=True,
    help="The template parameter that names a device.",
)


@click.group("enrollments")
def group() -> None:
    """Allowed devices per template: import, add, list."""


@group.command("import")
@click.argument("file", type=click.File("rb"))
@template_option
@parameter_option
@pass_runtime
def import_(runtime: Runtime, file: IO[bytes], template: str, parameter: str) -> None:
    """Add or update every device of a CSV (FILE, or - for stdin): all lines or none.

    The header names the columns: the parameter's (e.g. SerialNumber) is required; `enabled`
    (true/false) and `reprovision` (once/allow) are optional. Each bad line is printed and
    nothing is imported (exit status 1).
    """
    raw = file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        _rejected(file.name, {"": [f"not UTF-8 (byte {error.start})"]})
    try:
        entries = enrollment_csv.parse(text, template=template, parameter=parameter)
    except InvalidInput as error:
        _rejected(file.name, error.extra.get("errors") or {"": [error.detail]})
    added, updated = runtime.store().enrollments.upsert_all(entries, now())
    click.echo(f"added {added}, updated {updated}")


def _rejected(name: str, errors: dict[str, list[str]]) -> NoReturn:
    for where, problems in errors.items():
        click.echo(f"{name}: {where + ': ' if where else ''}{'; '.join(problems)}", err=True)
    click.echo("Nothing was imported.", err=True)
    raise click.exceptions.Exit(1)


@group.command("add")
@click.argument("value")
@template_option
@parameter_option
@click.option("--disabled", is_flag=True, help="Listed, but refused until enabled.")
@click.option(
    "--reprovision",
    type=click.Choice(enrollment_csv.REPROVISION),
    default="once",
    show_default=True,
    help="once: one provision per device; allow: again and again.",
)
@pass_runtime
def add(
    runtime: Runtime, value: str, template: str, parameter: str, disabled: bool, reprovision: str
) -> None:
    """Add the device whose PARAMETER is VALUE, or update it if it is listed."""
    entry = enrollment_csv.entry(template, parameter, value, not disabled, reprovision)
    added, _ = runtime.store().enrollments.upsert_all([entry], now())
    state = "disabled" if disabled else "enabled"
    click.echo(
        f"{'added' if added else 'updated'} {parameter}={value} for template {template} "
        f"({state}, reprovision {reprovision})"
    )


def _switch(name: str, enabled: bool, summary: str) -> None:
    """The `enable` and `disable` commands: one listed device allowed or refused."""

    @group.command(name, help=summary)
    @click.argument("value")
    @template_option
    @parameter_option
    @pass_runtime
    def switch(runtime: Runtime, value: str, template: str, parameter: str) -> None:
        record = runtime.store().enrollments.change(template, parameter, value, enabled=enabled)
        if record is None:
            raise NotFound(f"template {template} has no enrollment {parameter}={value[:60]}")
        click.echo(f"{'enabled' if enabled else 'disabled'} {parameter}={value} for template {template}")


_switch("enable", True, "Allow a listed device again.")
_switch("disable", False, "Refuse a listed device (kept on the list, with its history).")


@group.command("list")
@click.option("--template", type=TEMPLATE, help="Only this template's devices.")
@click.option("--json", "as_json_", is_flag=True, help="A JSON array (the admin API's objects).")
@pass_runtime
def list_(runtime: Runtime, template: str | None, as_json_: bool) -> None:
    """Every enrollment (of a template), in the order they were added."""
    records = list(_all(runtime.store(), template))
    empty = "No enrollments" + (f" for template {template}." if template else ".")
    if listed(records, as_json_, enrollment_view, empty):
        return
    headers = (
        "TEMPLATE",
        "PARAMETER",
        "VALUE",
        "ENABLED",
        "REPROVISION",
        "PROVISIONS",
        "LAST THING",
        "LAST PROVISIONED",
    )
    table(
        headers,
        [
            (
                r.template,
                r.parameter,
                r.value,
                "yes" if r.enabled else "no",
                r.reprovision,
                r.provisions,
                r.last_thing_name,
                r.last_provisioned_at,
            )
            for r in records
        ],
    )


def _all(store: Store, template: str | None) -> list[EnrollmentRecord]:
    records: list[EnrollmentRecord] = []
    after = 0
    while True:
        page = store.enrollments.page(template, after, PAGE)
        records += page
        if len(page) < PAGE:
            return records
        after = page[-1].id
