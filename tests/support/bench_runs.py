"""`python -m bench` run as a contributor runs it, from the repository's root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from repository import REPO_ROOT


def run_bench(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *map(str, args)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
