"""The regression guard: each figure of a run as a ratio of the same figure in a saved baseline.

`python -m bench --compare BASELINE.json` runs the benchmark and ends with this table;
`python -m bench.compare BASELINE.json NEW.json` compares two saved runs without running anything.

Cells are matched on (RTT, flow, mode, callers). Two kinds of the service's figures are guarded (the
other modes' figures are shown, unmarked, as a measure of how the machine itself moved):

- each mode's own figures (provisions/s, p50, p99, service CPU per provision): these move with the
  machine's speed and load, so they only mean something when both runs were made on the same quiet
  machine;
- the service's figures relative to the direct pool measured in the same run (throughput share, p50
  over the floor's p50): the floor absorbs the machine's speed, so these compare across machines and
  across noisy moments far better, and they are what a change to the request path moves.

A figure is a regression when it is worse than the baseline by more than the tolerance (15% by default:
side-by-side runs on this 2-core machine differ by up to ~10% with nothing changed).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLOOR_MODE = "direct-pool"
DEFAULT_TOLERANCE = 0.15
EXIT_REGRESSION = 3

# (key in a cell, label, True when a larger value is better)
OWN_FIGURES = (
    ("provisions_per_s", "prov/s", True),
    ("p50_ms", "p50", False),
    ("p99_ms", "p99", False),
    ("service_cpu_ms_per_provision", "svc cpu", False),
)

CellKey = tuple[float, str, str, int]


@dataclass(frozen=True)
class Comparison:
    cell: CellKey
    label: str
    baseline: float
    current: float
    higher_is_better: bool
    guarded: bool  # the service's figures; the other modes' are shown as the machine's mood

    @property
    def ratio(self) -> float:
        return self.current / self.baseline

    def regressed(self, tolerance: float) -> bool:
        if not self.guarded:
            return False
        if self.higher_is_better:
            return self.ratio < 1 - tolerance
        return self.ratio > 1 + tolerance


@dataclass(frozen=True)
class ErrorChange:
    cell: CellKey
    baseline: int
    current: int


def _key(cell: dict[str, Any]) -> CellKey:
    return (float(cell["rtt_ms"]), cell["flow"], cell["mode"], int(cell["callers"]))


def _guarded(key: CellKey) -> bool:
    return key[2].startswith("service")


def _floor_figures(cells: dict[CellKey, dict[str, Any]]) -> dict[CellKey, dict[str, float]]:
    """Per service cell, its figures relative to the direct pool's cell under the same condition."""
    relative: dict[CellKey, dict[str, float]] = {}
    for key, cell in cells.items():
        rtt, flow, mode, callers = key
        floor = cells.get((rtt, flow, FLOOR_MODE, callers))
        if not mode.startswith("service") or floor is None:
            continue
        figures: dict[str, float] = {}
        if cell.get("provisions_per_s") and floor.get("provisions_per_s"):
            figures["share of floor"] = cell["provisions_per_s"] / floor["provisions_per_s"]
        if cell.get("p50_ms") and floor.get("p50_ms"):
            figures["p50 / floor p50"] = cell["p50_ms"] / floor["p50_ms"]
        relative[key] = figures
    return relative


def compare(baseline: Iterable[dict[str, Any]], current: Iterable[dict[str, Any]]) -> list[Comparison]:
    old = {_key(c): c for c in baseline}
    new = {_key(c): c for c in current}
    found: list[Comparison] = []
    for key in sorted(set(old) & set(new)):
        if old[key] is new[key]:
            continue  # one cell in both (the floor of a side-by-side run, bench.baseline): 1.00
        for figure, label, higher in OWN_FIGURES:
            a, b = old[key].get(figure), new[key].get(figure)
            if a and b is not None:
                found.append(Comparison(key, label, float(a), float(b), higher, _guarded(key)))
    old_rel, new_rel = _floor_figures(old), _floor_figures(new)
    for key in sorted(set(old_rel) & set(new_rel)):
        for label, a in old_rel[key].items():
            b = new_rel[key].get(label)
            if b is not None and a:
                found.append(Comparison(key, label, a, b, label == "share of floor", True))
    return found


def more_errors(baseline: Iterable[dict[str, Any]], current: Iterable[dict[str, Any]]) -> list[ErrorChange]:
    """The service's cells that failed more requests than in the baseline: always a regression
    (a cell that breaks under load must not pass for having no figures to compare)."""
    old = {_key(c): int(c.get("errors") or 0) for c in baseline}
    return [
        ErrorChange(_key(c), old[_key(c)], int(c.get("errors") or 0))
        for c in current
        if _key(c) in old and _guarded(_key(c)) and int(c.get("errors") or 0) > old[_key(c)]
    ]


def _cell_name(key: CellKey) -> str:
    rtt, flow, mode, callers = key
    return f"{rtt:g}ms {flow} {mode} x{callers}"


def lines(
    comparisons: list[Comparison],
    tolerance: float,
    unmatched: Iterable[CellKey] = (),
    errors: Iterable[ErrorChange] = (),
) -> list[str]:
    out = [
        f"# against the baseline (ratio = this run / baseline; '<<' marks a figure worse by more "
        f"than {tolerance:.0%})",
        f"{'cell':<36}  {'figure':<16}  {'baseline':>9}  {'now':>9}  {'ratio':>6}",
    ]
    for c in comparisons:
        mark = "  <<" if c.regressed(tolerance) else ("" if c.guarded else "  (context)")
        out.append(
            f"{_cell_name(c.cell):<36}  {c.label:<16}  {c.baseline:>9.3g}  {c.current:>9.3g}  "
            f"{c.ratio:>6.2f}{mark}"
        )
    failing = list(errors)
    for change in failing:
        out.append(
            f"{_cell_name(change.cell):<36}  {'errors':<16}  {change.baseline:>9}  {change.current:>9}  "
            f"{'':>6}  <<"
        )
    skipped = sorted(unmatched)
    if skipped:
        out.append("# not in the baseline: " + ", ".join(_cell_name(k) for k in skipped))
    if not comparisons and not failing:
        out.append("# nothing to compare: no cell of this run is in the baseline")
    regressions = [c for c in comparisons if c.regressed(tolerance)]
    out.append(
        f"# {len(regressions)} of {len(comparisons)} figures worse than the baseline by more than "
        f"{tolerance:.0%}"
        + (f", {len(failing)} cells with more errors" if failing else "")
        + (
            "; figures relative to the direct pool are the ones to trust on a busy machine"
            if regressions or failing
            else ""
        )
    )
    return out


def load_cells(path: Path, role: str = "baseline") -> list[dict[str, Any]]:
    """The cells of a results file written by `python -m bench`, with a clear error otherwise."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise SystemExit(f"bench: cannot read the {role} {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SystemExit(f"bench: {path} is not JSON ({exc.msg} at line {exc.lineno})") from None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        raise SystemExit(f"bench: {path} has no 'cells' list: is it a results file of python -m bench?")
    required = {"rtt_ms", "flow", "mode", "callers"}
    for index, cell in enumerate(cells):
        missing = required - cell.keys()
        if missing:
            raise SystemExit(f"bench: {path}: cell {index} lacks {', '.join(sorted(missing))}")
    return cells


def report(baseline: list[dict[str, Any]], current: list[dict[str, Any]], tolerance: float) -> int:
    """Print the comparison; the exit status is EXIT_REGRESSION when a figure regressed."""
    found = compare(baseline, current)
    failing = more_errors(baseline, current)
    unmatched = {_key(c) for c in current} - {_key(c) for c in baseline}
    for line in lines(found, tolerance, unmatched, failing):
        print(line)
    return EXIT_REGRESSION if failing or any(c.regressed(tolerance) for c in found) else 0


def tolerance_arg(text: str) -> float:
    value = float(text)
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError("a fraction between 0 and 1, e.g. 0.15 for 15%")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.compare",
        description="Compare two results files of python -m bench, figure by figure.",
    )
    parser.add_argument("baseline", type=Path)
    parser.add_argument("current", type=Path)
    parser.add_argument("--tolerance", type=tolerance_arg, default=DEFAULT_TOLERANCE)
    args = parser.parse_args(argv)
    return report(load_cells(args.baseline), load_cells(args.current, "results file"), args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
