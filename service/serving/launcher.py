"""The server launcher: the service under gunicorn; with no endpoint, on the local emulator.

`python -m service` with no command runs this (`make run` calls it). In local mode it starts the
emulator once (not per worker), hands its addresses to gunicorn through the environment, prints
the URL, the API key and a curl to paste, and stops the emulator when gunicorn exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from service.config import Settings, SettingsError
from service.serving import local_mode as local


def gunicorn_command(*gunicorn_args: str) -> list[str]:
    """How the service runs in production: gunicorn with `service.serving.gunicorn_conf` (gthread workers,
    the pool made after the fork, settings from PROVISIONER_*). Every launcher uses this one."""
    return [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:service.serving.gunicorn_conf",
        "service:create_app()",
        *gunicorn_args,
    ]


def run(gunicorn_args: Sequence[str]) -> int:
    try:
        Settings.from_env()
    except SettingsError as exc:
        print(f"service: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    from service.serving.tls_front import TlsFront

    env = dict(os.environ)
    bind = env.setdefault("PROVISIONER_BIND", "127.0.0.1:8000")
    # PROVISIONER_TLS_BIND: nginx in front for mutual TLS (device certificates), gunicorn on.
    front = TlsFront.prepare(env)
    # The emulator belongs to this process, not to a worker: started here, stopped at our exit.
    local.export_for_workers(env, bind)
    process = subprocess.Popen(gunicorn_command(*gunicorn_args), env=env)

    def forward(signum: int, frame: object) -> None:
        # gunicorn drains on SIGTERM; we wait for it, then atexit stops the emulator.
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        if front is not None:
            try:
                front.start(process)
            except RuntimeError as error:
                print(f"service: {error}", file=sys.stderr)
        return process.wait()
    finally:
        if front is not None:
            front.stop()
