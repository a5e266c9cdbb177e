"""`python -m bench --baseline-tree DIR`: the service of another checkout measured in the same run,
as a contributor runs it (here the checkout is this one: an A/A run)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench_runs import run_bench
from repository import REPO_ROOT
from sqlalchemy.engine import make_url

from bench import baseline as twins
from bench.compare import compare
from bench.stores import stores_for


def test_each_service_mode_runs_beside_its_baseline_twin_and_the_run_ends_compared(tmp_path: Path) -> None:
    done = run_bench(
        "--modes", "service,direct-pool", "--stores", "off", "--flows", "csr", "--levels", "1",
        "--rtt", "0", "--seconds", "0.6", "--rounds", "2", "--warmup", "0.2", "--csrs", "8",
        "--baseline-tree", REPO_ROOT, "--results-dir", tmp_path,
    )  # fmt: skip

    # 3: a figure of the twin run was 15% worse, which two identical services can be on a busy machine
    assert done.returncode in (0, 3), done.stderr
    rows = {line.split()[2]: line.split() for line in done.stdout.splitlines() if line.startswith("0 ")}
    assert set(rows) == {"service", "service@baseline", "direct-pool"}
    assert all(int(row[7]) == 0 for row in rows.values())  # no errors, the twin's included
    compared = [line for line in done.stdout.splitlines() if line.startswith("0ms csr ")]
    assert {line.split()[2] for line in compared} == {"service"}  # the floor is one cell: not compared
    assert any("svc cpu" in line for line in compared)
    assert any("p50 / floor p50" in line for line in compared)
    saved = json.loads((tmp_path / "latest.json").read_text())
    assert saved["settings"]["baseline_tree"]["path"] == str(REPO_ROOT)
    assert {cell["mode"] for cell in saved["cells"]} == {"service", "service@baseline", "direct-pool"}


def test_a_tree_that_is_not_a_checkout_is_refused_before_anything_starts(tmp_path: Path) -> None:
    done = run_bench("--baseline-tree", tmp_path, timeout=30)

    assert done.returncode == 2
    assert f"--baseline-tree: {tmp_path} is not a checkout of this project" in done.stderr


def test_a_saved_baseline_and_a_baseline_tree_are_not_given_together(tmp_path: Path) -> None:
    done = run_bench("--compare", tmp_path / "old.json", "--baseline-tree", REPO_ROOT, timeout=30)

    assert done.returncode == 2
    assert "--compare and --baseline-tree are two baselines: give one" in done.stderr


def test_the_twins_are_compared_under_their_own_mode_and_the_floor_is_not_compared_with_itself() -> None:
    def cell(mode: str, p50: float) -> dict[str, Any]:
        return {"rtt_ms": 0, "flow": "csr", "mode": mode, "callers": 1, "p50_ms": p50}

    cells = [cell("service", 6.0), cell("service@baseline", 5.0), cell("direct-pool", 2.0)]
    baseline, current = twins.split(cells)

    found = {(c.cell[2], c.label): round(c.ratio, 2) for c in compare(baseline, current)}
    assert found[("service", "p50")] == 1.2
    assert found[("service", "p50 / floor p50")] == 1.2  # 6/2 against 5/2
    assert {mode for mode, _ in found} == {"service"}


def test_a_service_and_its_twin_never_share_a_database() -> None:
    with stores_for(["off", "sqlite", "postgresql"], suffixes=("", twins.SUFFIX)) as urls:
        assert urls["service"] == urls["service@baseline"] == "off"
        assert urls["service+sqlite"].startswith("sqlite:///")
        assert urls["service+sqlite"] != urls["service+sqlite@baseline"]
        # One PostgreSQL server, a database each.
        here, twin = (make_url(urls[m]) for m in ("service+postgresql", "service+postgresql@baseline"))
        assert (here.host, here.port) == (twin.host, twin.port) and here.database != twin.database


def test_a_run_with_no_service_to_twin_is_refused(tmp_path: Path) -> None:
    done = run_bench(
        "--modes", "direct-pool", "--baseline-tree", REPO_ROOT, "--results-dir", tmp_path, timeout=30
    )

    assert done.returncode == 2
    assert "--baseline-tree compares the service" in done.stderr
