"""Docker and compose, as the container checks drive them: commands with timeouts, the
containers of a service, their health and logs, and HTTP polling. No check lives here."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parents[2]
IMAGE = "iot-provisioner:latest"


class CheckFailed(Exception):
    """A container check did not hold; the message says what was seen."""


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def log(message: str) -> None:
    print(f"[containers {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: Sequence[str], *, timeout: float, env: dict[str, str] | None = None, check: bool = True) -> str:
    """Run a command, return its stdout; its stderr comes with the failure."""
    done = subprocess.run(
        list(args), capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO_ROOT, check=False
    )
    if check and done.returncode != 0:
        raise CheckFailed(f"{' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
    return done.stdout


def compose_command() -> list[str]:
    """Compose v2 (docker compose) where it exists; Debian bookworm has only v1 (docker-compose)."""
    plugin = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False, timeout=30)
    if plugin.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise CheckFailed("neither `docker compose` nor `docker-compose` is installed")


@dataclass
class Compose:
    """One compose project: its file, its name, and the environment its file interpolates."""

    file: str
    project: str
    env: dict[str, str] = field(default_factory=dict)
    command: list[str] = field(default_factory=compose_command)

    def __call__(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        full_env = {**os.environ, **self.env}
        return run(
            [*self.command, "-f", self.file, "-p", self.project, *args],
            timeout=timeout,
            env=full_env,
            check=check,
        )

    def containers(self, service: str) -> list[str]:
        """Names of the service's containers, running or not, in replica order."""
        out = run(
            [
                "docker",
                "ps",
                "-a",
                "--filter",
                f"label=com.docker.compose.project={self.project}",
                "--filter",
                f"label=com.docker.compose.service={service}",
                "--format",
                "{{.Names}}",
            ],
            timeout=30,
        )
        return sorted(out.split())


def inspect(container: str) -> dict[str, Any]:
    result: list[dict[str, Any]] = json.loads(run(["docker", "inspect", container], timeout=30))
    return result[0]


def health(container: str) -> str:
    state = inspect(container)["State"]
    return str(state.get("Health", {}).get("Status", state["Status"]))


def address(container: str) -> str:
    networks = inspect(container)["NetworkSettings"]["Networks"]
    return ",".join(n["IPAddress"] for n in networks.values())


def logs(container: str) -> str:
    done = subprocess.run(
        ["docker", "logs", container], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout + done.stderr


def json_lines(text: str) -> list[dict[str, Any]]:
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return lines


def wait_for(what: str, ready: Callable[[], bool], timeout: float, every: float = 0.5) -> float:
    """Poll until `ready()`; return the seconds it took, or fail naming `what`."""
    started = time.monotonic()
    while not ready():
        if time.monotonic() - started > timeout:
            raise CheckFailed(f"{what}: not within {timeout:g} s")
        time.sleep(every)
    return time.monotonic() - started


def answers(url: str, status: int = 200) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == status
    except httpx.HTTPError:
        return False


def in_image(script: str, *docker_args: str) -> str:
    """`script` run by sh in a throwaway container of the image (`docker_args`: options of
    `docker run`, such as -e); its stdout."""
    return run(["docker", "run", "--rm", *docker_args, IMAGE, "sh", "-c", script], timeout=60)


def image_size_mb(image: str = IMAGE) -> float:
    return int(run(["docker", "image", "inspect", "-f", "{{.Size}}", image], timeout=30)) / 1e6
