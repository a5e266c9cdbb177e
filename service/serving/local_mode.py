"""Local mode: no PROVISIONER_IOT_ENDPOINT, so run against the emulator, started as a process.

The service never imports the emulator (they share only the wire contract; lint-imports' `apart`
contract keeps them so): it runs `python -m emulator` and reads the one JSON line the emulator
prints when ready. One emulator serves every worker of a data directory: the first process to get
the lock starts it and records it in `emulator.json`; the others find it there. The starter stops
it when it exits.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import threading
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from service.config import Settings, SettingsError

log = logging.getLogger("service.local")

# The emulator's documented well-known test credentials (emulator README); never real ones.
EMULATOR_ACCESS_KEY_ID = "AKIDEXAMPLE"
EMULATOR_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
START_TIMEOUT = 60.0


def prepare(settings: Settings) -> Settings:
    """Settings pointing at a running emulator (started if needed), with an API key."""
    info = ensure_emulator(settings.emulator_data_dir)
    scheme = "wss" if settings.emulator_mode == "sigv4" else "mqtts"
    api_keys = settings.api_keys
    if not api_keys:
        api_keys = (generated_api_key(settings.emulator_data_dir),)
    return settings.replace(
        iot_endpoint=info["listeners"][scheme],
        auth_mode=settings.emulator_mode,
        region="us-east-1",
        ca_file=Path(info["caFile"]),
        claim_cert=Path(info["claimCertificate"]),
        claim_key=Path(info["claimKey"]),
        api_keys=api_keys,
        # The store sits beside the emulator's data unless another database was configured.
        database_url=settings.database_url or settings.store_url,
        static_credentials=(EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY),
        **_control_plane(settings, info),
        **_tls_files(settings),
    )


def _tls_files(settings: Settings) -> dict[str, Any]:
    """The mutual-TLS listener's certificate for localhost (service.serving.tls), unless one was given."""
    if settings.tls_bind is None or settings.tls_cert is not None:
        return {}
    from service.serving import tls

    made = tls.listener(settings)
    assert made is not None
    return {"tls_cert": made.certificate, "tls_key": made.key}


def _control_plane(settings: Settings, info: dict[str, Any]) -> dict[str, Any]:
    """The emulator's control plane (HTTPS, its CA), unless one was configured."""
    url = info["listeners"].get("control-tls")
    if settings.control_endpoint is not None or url is None:
        return {}
    return {"control_endpoint": url, "control_ca_file": Path(info["caFile"])}


def with_running_emulator(settings: Settings) -> Settings:
    """For the operator's commands in local mode: the running emulator's control plane and test
    credentials (the emulator is not started here: without one the control plane is unavailable)."""
    if not settings.local_mode:
        return settings
    record = settings.emulator_data_dir / "emulator.json"
    try:
        info: dict[str, Any] = json.loads(record.read_text())
    except (OSError, ValueError):
        return settings
    if not _alive(info):
        return settings
    return settings.replace(
        region="us-east-1",
        static_credentials=(EMULATOR_ACCESS_KEY_ID, EMULATOR_SECRET_ACCESS_KEY),
        **_control_plane(settings, info),
    )


def worker_environment(prepared: Settings) -> dict[str, str]:
    """What gunicorn workers need in their environment to use the emulator `prepare` started."""
    return {
        "PROVISIONER_IOT_ENDPOINT": prepared.iot_endpoint or "",
        "PROVISIONER_AUTH_MODE": prepared.auth_mode,
        "PROVISIONER_AWS_REGION": prepared.region or "us-east-1",
        "PROVISIONER_CA_FILE": str(prepared.ca_file),
        "PROVISIONER_CLAIM_CERT": str(prepared.claim_cert),
        "PROVISIONER_CLAIM_KEY": str(prepared.claim_key),
        "PROVISIONER_API_KEYS": ",".join(prepared.api_keys),
        "PROVISIONER_DATABASE_URL": prepared.database_url or "off",
        "PROVISIONER_CONTROL_ENDPOINT": prepared.control_endpoint or "",
        "PROVISIONER_CONTROL_CA_FILE": str(prepared.control_ca_file or ""),
        "PROVISIONER_TLS_CERT": str(prepared.tls_cert or ""),
        "PROVISIONER_TLS_KEY": str(prepared.tls_key or ""),
        # The emulator's published test pair, never real credentials (botocore's chain reads
        # the environment before profiles, which are cleared below).
        "AWS_ACCESS_KEY_ID": EMULATOR_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": EMULATOR_SECRET_ACCESS_KEY,
    }


def export_for_workers(environ: MutableMapping[str, str], bind: str) -> Settings | None:
    """In local mode, start the emulator here (gunicorn's master or `python -m service`), point
    the environment the workers inherit at it, and print how to call the service."""
    settings = Settings.from_env(environ)
    if not settings.local_mode:
        return None
    prepared = prepare(settings)
    environ.update(worker_environment(prepared))
    # The keys and the database URL now travel inline; their _FILE forms would conflict.
    for name in (
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "PROVISIONER_AWS_PROFILE",
        "PROVISIONER_API_KEYS_FILE",
        "PROVISIONER_DATABASE_URL_FILE",
    ):
        environ.pop(name, None)
    # A configured key is the operator's secret: never printed. Only a key made here is shown.
    key = prepared.api_keys[0] if settings.generate_api_key else "<your key>"
    print(
        f"\nlocal mode: service on http://{bind}, AWS IoT emulated at "
        f"{prepared.iot_endpoint}\n\nTry it:\n"
        f"  curl -s -X POST http://{bind}/provision \\\n"
        f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
        '    -d \'{"templateName": "demo", "parameters": {"SerialNumber": "SN-0001"}}\''
        "\n",
        file=sys.stderr,
        flush=True,
    )
    return prepared


def generated_api_key(data_dir: Path) -> str:
    """One key per data directory, made on first use and printed once (every worker shares it)."""
    path = data_dir / "api-key"
    with _locked(data_dir):
        if path.exists():
            return path.read_text().strip()
        key = secrets.token_urlsafe(32)
        path.write_text(key + "\n")
        path.chmod(0o600)
    print(f"local mode: generated API key (also in {path}):\n  {key}", file=sys.stderr, flush=True)
    return key


def ensure_emulator(data_dir: Path) -> dict[str, Any]:
    data_dir.mkdir(parents=True, exist_ok=True)
    record = data_dir / "emulator.json"
    with _locked(data_dir):
        if record.exists():
            info: dict[str, Any] = json.loads(record.read_text())
            if _alive(info):
                return info
        info = _start(data_dir)
        record.write_text(json.dumps(info))
        return info


class _locked:
    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self._file = open(data_dir / "emulator.lock", "w")  # noqa: SIM115 (closed in __exit__)

    def __enter__(self) -> None:
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def _alive(info: dict[str, Any]) -> bool:
    try:
        os.kill(int(info["pid"]), 0)
    except (OSError, KeyError, ValueError):
        return False
    url = urlsplit(next(iter(info["listeners"].values())))
    try:
        with socket.create_connection((url.hostname, url.port), timeout=1):
            return True
    except OSError:
        return False


def _start(data_dir: Path) -> dict[str, Any]:
    log_path = data_dir / "emulator.log"
    command = [
        sys.executable,
        "-m",
        "emulator",
        "--data-dir",
        str(data_dir),
        "--mqtt-port",
        "0",
        "--mqtts-port",
        "0",
        "--ws-port",
        "0",
        "--wss-port",
        "0",
    ]
    with open(log_path, "ab") as log_file:
        # Its own session: a Ctrl-C in the terminal must reach gunicorn (which drains) and not
        # kill the emulator under requests in flight; we stop it ourselves at exit.
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=log_file, stdin=subprocess.DEVNULL, start_new_session=True
        )
    line: list[bytes] = []
    reader = threading.Thread(
        target=lambda: line.append(process.stdout.readline()),  # type: ignore[union-attr]
        daemon=True,
    )
    reader.start()
    reader.join(START_TIMEOUT)
    if not line or not line[0].strip():
        process.kill()
        raise SettingsError(
            [f"local mode: the emulator did not start within {START_TIMEOUT:g} s; see {log_path}"]
        )
    info: dict[str, Any] = json.loads(line[0])
    info["pid"] = process.pid
    atexit.register(_stop, process)
    log.info(
        "local mode: emulator started (pid %d), listeners %s; log in %s",
        process.pid,
        ", ".join(info["listeners"].values()),
        log_path,
    )
    return info


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
