"""What the factory CLI writes or prints holds values it did not choose (serials from a CSV, the
service's messages): they must reach a spreadsheet, a terminal or the disk as data, never as code."""

from __future__ import annotations

import csv
import stat
import subprocess
from pathlib import Path

from factory_service import RunCli, Service, batch_args

from emulator import Emulator
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


# --- the terminal: serials are text, never markup or escape sequences ---------------------------

HOSTILE_SERIALS = ["[/red]", "[bold]x", "\x1b[31mRED\x1b[0m", "bell\x07", ":smile:"]


def test_a_batch_of_hostile_serials_prints_them_as_text_without_a_traceback(
    service: Service, run_cli: RunCli, tmp_path: Path
) -> None:
    # A rule no row matches: every row fails, so every serial reaches the summary's table.
    key = service.create_key(
        templates=["demo"], serverKeys=False, parameterRules={"SerialNumber": "^SN-[0-9]+$"}
    )
    rows = tmp_path / "serials.csv"
    with open(rows, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["SerialNumber"])
        writer.writerows([serial] for serial in HOSTILE_SERIALS)

    done = run_cli(*batch_args(rows, tmp_path / "out"), IOT_FACTORY_API_KEY=key)

    printed = done.stdout + done.stderr
    assert done.returncode == 1, printed
    assert "Traceback" not in printed and "MarkupError" not in printed
    assert "\x1b" not in printed and "\x07" not in printed  # nothing reaches the terminal raw
    assert "SerialNumber=[/red]" in done.stdout and "SerialNumber=[bold]x" in done.stdout
    assert "\\x1b[31mRED" in done.stdout and "SerialNumber=:smile:" in done.stdout


# --- the disk: never through a link placed under --out; device folders 0700 ---------------------


def link_elsewhere(link: Path, tmp_path: Path) -> Path:
    """`link` (its parent made) a symbolic link to a new folder of mode 0755 outside --out; that folder."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    link.parent.mkdir(parents=True)
    link.symlink_to(elsewhere)
    return elsewhere


def assert_refused_the_link(done: subprocess.CompletedProcess[str], elsewhere: Path) -> None:
    assert done.returncode == 1, done.stdout + done.stderr
    assert "symbolic link" in done.stderr and "Traceback" not in done.stderr
    assert list(elsewhere.iterdir()) == []  # no key written through the link
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755  # and no chmod through it


def test_a_batch_refuses_a_symbolic_link_at_its_state_folder(
    service: Service, run_cli: RunCli, factory_key: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    elsewhere = link_elsewhere(out / ".batch", tmp_path)
    rows = tmp_path / "serials.csv"
    rows.write_text("SerialNumber\nSN-L1\n")

    done = run_cli(*batch_args(rows, out))

    assert_refused_the_link(done, elsewhere)
    assert service.registrations() == []  # refused before anything was sent


def test_a_device_folder_that_is_a_symbolic_link_gets_no_key(
    run_cli: RunCli, emulator: Emulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    elsewhere = link_elsewhere(out / "demo-SN-L2", tmp_path)

    done = run_cli("device", "--template", "demo", "--param", "SerialNumber=SN-L2", "--out", str(out))

    assert_refused_the_link(done, elsewhere)


def test_an_existing_device_folder_is_made_0700_around_its_key(run_cli: RunCli, tmp_path: Path) -> None:
    out = tmp_path / "out"
    folder = out / "demo-SN-L3"
    folder.mkdir(parents=True)
    folder.chmod(0o777)

    done = run_cli("device", "--template", "demo", "--param", "SerialNumber=SN-L3", "--out", str(out))

    assert done.returncode == 0, done.stdout + done.stderr
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE((folder / "private.key").stat().st_mode) == 0o600
