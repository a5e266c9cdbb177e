"""The end of a batch: a table for the person, a CSV of the failed rows for the next step."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from provisioner_client import terminal
from provisioner_client.batch import Report
from provisioner_client.files import write_atomic
from provisioner_client.terminal import cell

SHOWN_FAILURES = 20
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection"): a
# serial or a service's message like `=cmd|'/C calc'!A0` would run on the operator's machine.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def print_summary(console: Console, report: Report, failures_csv: Path | None) -> None:
    provisioned = [o for o in report.outcomes if o.state == "provisioned"]
    replayed = sum(1 for o in provisioned if o.reason == "replayed")
    table = Table(title="Batch summary", show_header=False)
    table.add_row(
        "provisioned", str(len(provisioned)) + (f" ({replayed} recovered by replay)" if replayed else "")
    )
    table.add_row("already done", str(report.count("done")))
    table.add_row("failed", str(report.count("failed")))
    if report.not_attempted:
        table.add_row("not attempted", str(report.not_attempted))
    table.add_row("total rows", str(report.total))
    console.print(table)
    missing = sorted((o for o in report.outcomes if o.state == "done" and o.reason), key=lambda o: o.row.line)
    if missing:
        shown = Table("line", "thing", "reason", title="Already done, but the device folder is missing")
        for outcome in missing[:SHOWN_FAILURES]:
            shown.add_row(str(outcome.row.line), cell(outcome.thing_name or ""), cell(outcome.reason))
        console.print(shown)
        if len(missing) > SHOWN_FAILURES:
            console.print(f"... and {len(missing) - SHOWN_FAILURES} more")
    failures = report.failures
    if failures:
        shown = Table("line", "parameters", "status", "reason", title="Failed rows")
        for outcome in failures[:SHOWN_FAILURES]:
            shown.add_row(
                str(outcome.row.line),
                cell(_parameters(outcome.row.parameters)),
                str(outcome.status or ""),
                cell(outcome.reason),
            )
        console.print(shown)
        if len(failures) > SHOWN_FAILURES:
            console.print(f"... and {len(failures) - SHOWN_FAILURES} more")
        if failures_csv is not None:
            console.print(f"Failed rows are listed in {terminal.shown(failures_csv)}")
    if report.aborted:
        console.print(f"[bold red]Stopped:[/] {terminal.shown(report.aborted)}")
    if report.interrupted:
        console.print(
            "[yellow]Interrupted:[/] run the same command again to provision the rest "
            "(devices under way are recovered, never provisioned twice)."
        )


def write_failures(report: Report, path: Path) -> None:
    """row, parameters (JSON), status, reason; one line per failed row. No failure: no file."""
    if not report.failures:
        path.unlink(missing_ok=True)  # a list from an earlier run would mislead
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "parameters", "status", "reason"])
    for outcome in report.failures:
        writer.writerow(
            [
                outcome.row.line,
                _csv_cell(json.dumps(dict(outcome.row.parameters), sort_keys=True)),
                outcome.status or "",
                _csv_cell(outcome.reason),
            ]
        )
    write_atomic(path, buffer.getvalue().encode("utf-8"))


def _csv_cell(text: str) -> str:
    """A cell a spreadsheet shows as text: a leading apostrophe before a formula's first character."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def _parameters(parameters: Mapping[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in parameters.items())
