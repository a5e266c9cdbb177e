"""`python -m bench`'s store column: the store's two transactions per provision, read from the
service's own /metrics, so each run shows how much of a provision's latency is the database's."""

from __future__ import annotations

import json
from pathlib import Path

from bench_runs import run_bench


def test_each_service_cell_reports_its_stores_share_of_a_provision(tmp_path: Path) -> None:
    done = run_bench(
        "--modes", "service", "--stores", "off,sqlite", "--flows", "csr", "--levels", "1",
        "--rtt", "0", "--seconds", "0.6", "--rounds", "1", "--warmup", "0.2", "--csrs", "8",
        "--results-dir", tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "store ms" in done.stdout
    cells = {cell["mode"]: cell for cell in json.loads((tmp_path / "latest.json").read_text())["cells"]}
    with_store, without = cells["service+sqlite"], cells["service"]
    assert with_store["provisions"] > 0 and with_store["errors"] == 0
    # SQLite's two transactions take time, and less than the whole provision; with no store
    # (PROVISIONER_DATABASE_URL=off) they are next to nothing.
    assert 0 < with_store["store_ms_per_provision"] < with_store["p50_ms"]
    assert without["store_ms_per_provision"] < with_store["store_ms_per_provision"]
