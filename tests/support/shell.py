"""Command lines as a person types them (curl, openssl, `python -m ...`), run by bash as subprocesses."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def sh(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`script` in bash with -e and pipefail, in `cwd`; its output as text."""
    return subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + script],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(done: subprocess.CompletedProcess[str]) -> str:
    """The output of a command that must have exited 0 (else everything it said, in the failure)."""
    assert done.returncode == 0, f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr}"
    return done.stdout
