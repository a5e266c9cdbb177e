"""The benchmark's regression guard, run as a contributor runs it, on a saved results file."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SAVED = REPO / "bench" / "results" / "2026-11-26-vm.json"


def run_compare(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.compare", *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_run_compared_with_itself_has_no_regression() -> None:
    done = run_compare(SAVED, SAVED)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if " service x" in line]
    assert rows and all(line.split()[-1] == "1.00" for line in rows)
    assert "0 of" in done.stdout.splitlines()[-1]


def saved_run_with(path: Path, flow: str, callers: int, **changed: Any) -> Path:
    """The saved run, with the service's loopback cell of `flow` and `callers` changed."""
    data = json.loads(SAVED.read_text())
    for cell in data["cells"]:
        if (cell["mode"], cell["rtt_ms"], cell["flow"], cell["callers"]) == ("service", 0, flow, callers):
            cell.update(changed)
    path.write_text(json.dumps(data))
    return path


def marked_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stdout.splitlines() if line.endswith("<<")]


def test_a_slower_service_is_marked_and_fails_the_run(tmp_path: Path) -> None:
    slower = saved_run_with(tmp_path / "slower.json", "csr", 8, p50_ms=2 * _p50(8))

    done = run_compare(SAVED, slower)

    assert done.returncode == 3
    marked = marked_lines(done)
    assert any("0ms csr service x8" in line and " p50 " in line and "2.00" in line for line in marked)
    # relative to the floor measured in the same run, the same regression shows
    assert any("0ms csr service x8" in line and "p50 / floor p50" in line for line in marked)
    # the other modes are context, never a regression
    assert not any("direct-pool" in line for line in marked)


def test_a_service_cell_that_now_fails_is_a_regression_even_with_no_figures(tmp_path: Path) -> None:
    no_figures = {"provisions": 0, "provisions_per_s": 0.0, "p50_ms": None, "p99_ms": None}
    failing = saved_run_with(tmp_path / "failing.json", "csr", 32, errors=500, **no_figures)

    done = run_compare(SAVED, failing)

    assert done.returncode == 3
    marked = marked_lines(done)
    assert any("0ms csr service x32" in line and " errors " in line and "500" in line for line in marked)
    assert "1 cells with more errors" in done.stdout.splitlines()[-1]


def _p50(callers: int) -> float:
    cells = json.loads(SAVED.read_text())["cells"]
    return float(
        next(
            c["p50_ms"]
            for c in cells
            if (c["mode"], c["rtt_ms"], c["flow"], c["callers"]) == ("service", 0, "csr", callers)
        )
    )


def test_a_baseline_that_is_not_a_results_file_is_named() -> None:
    done = run_compare(REPO / "pyproject.toml", SAVED)
    assert done.returncode == 1
    assert "pyproject.toml is not JSON" in done.stderr
    assert "Traceback" not in done.stderr

    missing = run_compare(REPO / "no-such.json", SAVED)
    assert missing.returncode == 1
    assert "cannot read the baseline" in missing.stderr and "Traceback" not in missing.stderr


def test_bench_refuses_a_bad_baseline_before_running_anything() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--compare", "no-such.json", "--seconds", "0.1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1
    assert "cannot read the baseline no-such.json" in done.stderr
    assert "cells" not in done.stdout  # no cell was run
