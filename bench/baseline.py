"""A baseline side by side: the service of an earlier commit, measured in the same run as this one.

`python -m bench --baseline-tree DIR` runs each service mode twice, from this checkout and from DIR
(a checkout of an earlier commit, e.g. `git worktree add --detach DIR main`), as `<mode>` and
`<mode>@baseline`: same emulator, same load generator, the same rounds in which every mode takes
its turn, each service with a database of its own. The run ends with `bench.compare`'s table of this
tree's figures as ratios of the baseline's.

Why: the machine's own speed drifts between runs (the direct pool at 1 caller did 373-503
provisions/s with nothing changed, docs/benchmarks.md), so a figure saved an hour ago is a weak
baseline; two services measured in turns within the same seconds meet the same drift.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

SUFFIX = "@baseline"


def check_tree(tree: Path) -> str | None:
    """Why `tree` cannot serve as a baseline, or None when it can."""
    if not (tree / "service" / "__init__.py").is_file():
        return f"{tree} is not a checkout of this project (no service/__init__.py)"
    if not (tree / "service" / "serving" / "gunicorn_conf.py").is_file():
        # The launcher runs `service.serving.gunicorn_conf` from the baseline's own tree.
        return f"{tree} is older than service/serving/ (the benchmark starts gunicorn with its gunicorn_conf)"
    return None


def commit_of(tree: Path) -> str:
    """The baseline's commit, for the report (or "unknown" outside git)."""
    try:
        done = subprocess.run(
            ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip()[:100] if done.returncode == 0 else "unknown"


def with_baselines(modes: list[str], excluded: tuple[str, ...]) -> list[str]:
    """Each service mode followed by its baseline twin (not those in `excluded`)."""
    expanded: list[str] = []
    for mode in modes:
        expanded.append(mode)
        if mode.startswith("service") and mode not in excluded:
            expanded.append(mode + SUFFIX)
    return expanded


def is_baseline(mode: str) -> bool:
    return mode.endswith(SUFFIX)


def own_mode(mode: str) -> str:
    """The mode a baseline twin measures (`service+sqlite@baseline` -> `service+sqlite`)."""
    return mode.removesuffix(SUFFIX)


def split(cells: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(baseline, current) cells to compare: the twins under their own mode's name, and this
    tree's cells; the other modes (the direct pool, the floor) belong to both."""
    shared = [c for c in cells if not str(c["mode"]).startswith("service")]
    baseline = [dict(c, mode=own_mode(c["mode"])) for c in cells if is_baseline(c["mode"])]
    current = [c for c in cells if not is_baseline(c["mode"])]
    return baseline + shared, current
