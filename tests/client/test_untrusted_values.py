"""What the factory CLI writes or prints holds values it did not choose (serials from a CSV, the
service's messages): they must reach a spreadsheet, a terminal or the disk as data, never as code."""

from __future__ import annotations

import csv
from pathlib import Path

from provisioner_client.batch import Outcome, Report, Row
from provisioner_client.summary import write_failures


def test_failures_csv_cells_that_a_spreadsheet_would_run_start_with_an_apostrophe(tmp_path: Path) -> None:
    reasons = ["=cmd|'/Ccalc'!A0", "+1+1", "-1", "@SUM(A1)", "\tx", "\rx", "plain"]
    report = Report(total=len(reasons))
    for line, reason in enumerate(reasons, start=2):
        report.outcomes.append(
            Outcome(Row(line, {"SerialNumber": reason}), "failed", status=403, reason=reason)
        )
    path = tmp_path / "failures.csv"

    write_failures(report, path)

    with open(path, newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["reason"] for row in rows] == ["'" + r for r in reasons[:-1]] + ["plain"]
    for row in rows:
        assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in row.values()), row
