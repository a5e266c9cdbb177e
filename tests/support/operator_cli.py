"""`python -m service ARGS` as an operator runs it: a subprocess in the repository, with an
environment of its own (nothing of the test's PROVISIONER_* or AWS_* settings)."""

from __future__ import annotations

import os
import subprocess
import sys

from repository import REPO_ROOT

BOOTSTRAP_KEY = "bootstrap-key-for-cli-tests"


def cli_env(url: str) -> dict[str, str]:
    """The operator's environment on the store at `url`, not in local mode (no emulator)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "AWS_"))}
    env.update(
        {
            "PROVISIONER_DATABASE_URL": url,
            "PROVISIONER_IOT_ENDPOINT": "mqtt://127.0.0.1:1",  # not local mode: no emulator
            "PROVISIONER_API_KEYS": BOOTSTRAP_KEY,
        }
    )
    return env


def run(url: str, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m service ARGS` on the store at `url` (`env`: variables to add or change)."""
    return subprocess.run(
        [sys.executable, "-m", "service", *args],
        env=cli_env(url) | env,
        cwd=REPO_ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )
