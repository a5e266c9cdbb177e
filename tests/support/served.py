"""The service as production runs it, in a subprocess: gunicorn (and nginx in front of it)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import requests

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator
from service.serving.launcher import gunicorn_command

API_KEY = "served-test-key-0123456789"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def emulator_env(emulator: Emulator, **env: str) -> dict[str, str]:
    """The environment of a service on `emulator` (WSS + SigV4 with its test credentials)."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "AWS_"))},
        "PROVISIONER_IOT_ENDPOINT": emulator.urls["wss"],
        "PROVISIONER_AUTH_MODE": "sigv4",
        "PROVISIONER_AWS_REGION": "us-east-1",
        "PROVISIONER_CA_FILE": str(emulator.ca_path),
        "PROVISIONER_API_KEYS": API_KEY,
        "PROVISIONER_POOL_SIZE": "2",
        "PROVISIONER_DATABASE_URL": "off",
        "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET_ACCESS_KEY,
        **env,
    }


def gunicorn_env(
    emulator: Emulator, port: int, workers: int, database: Path | None = None, **env: str
) -> dict[str, str]:
    """emulator_env for gunicorn on 127.0.0.1:`port` with `workers` workers and, given a `database`
    file, a SQLite store in it."""
    if database is not None:
        env = {"PROVISIONER_DATABASE_URL": f"sqlite:///{database}", **env}
    bind = f"127.0.0.1:{port}"
    return emulator_env(emulator, PROVISIONER_BIND=bind, PROVISIONER_WORKERS=str(workers), **env)


def start_gunicorn(env: Mapping[str, str], log: Path, *arguments: str) -> subprocess.Popen[bytes]:
    """gunicorn with the service's config and these command-line `arguments`; its stderr goes to `log`."""
    with open(log, "ab") as stderr:
        return subprocess.Popen(
            gunicorn_command(*arguments),
            env=dict(env),
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )


def wait_ready(
    base: str, process: subprocess.Popen[Any], timeout: float = 60, *, verify: bool | str = True
) -> None:
    """Until GET `base`/readyz answers 200 (over TLS: `verify` is the CA file); fails at once if
    `process` exits, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"service exited early with {process.returncode}")
        try:
            if requests.get(base + "/readyz", timeout=2, verify=verify).status_code == 200:
                return
        except requests.RequestException:  # not listening yet, or busy starting its workers
            pass
        time.sleep(0.1)
    raise AssertionError("service not ready in time")


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(timeout)
