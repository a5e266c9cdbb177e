"""`python -m service`: run the service under gunicorn; with no endpoint, on the local emulator.

This is what `make run` calls. In local mode it starts the emulator once (not per worker), hands
its addresses to gunicorn through the environment, prints the URL, the API key and a curl to
paste, and stops the emulator when gunicorn exits.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from service import local_mode as local
from service.config import Settings, SettingsError


def main() -> int:
    try:
        Settings.from_env()
    except SettingsError as exc:
        print(f"service: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    bind = env.setdefault("PROVISIONER_BIND", "127.0.0.1:8000")
    # The emulator belongs to this process, not to a worker: started here, stopped at our exit.
    local.export_for_workers(env, bind)
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:service.gunicorn_conf",
        "service:create_app()",
        *sys.argv[1:],
    ]
    process = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: object) -> None:
        # gunicorn drains on SIGTERM; we wait for it, then atexit stops the emulator.
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return process.wait()


if __name__ == "__main__":
    sys.exit(main())
