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

from service import local
from service.settings import Settings, SettingsError


def main() -> int:
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"service: invalid settings:\n{exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    bind = env.setdefault("PROVISIONER_BIND", "127.0.0.1:8000")
    if settings.local_mode:
        prepared = local.prepare(settings)
        env.update({
            "PROVISIONER_IOT_ENDPOINT": prepared.iot_endpoint or "",
            "PROVISIONER_AUTH_MODE": prepared.auth_mode,
            "PROVISIONER_AWS_REGION": prepared.region or "us-east-1",
            "PROVISIONER_CA_FILE": str(prepared.ca_file),
            "PROVISIONER_CLAIM_CERT": str(prepared.claim_cert),
            "PROVISIONER_CLAIM_KEY": str(prepared.claim_key),
            "PROVISIONER_API_KEYS": ",".join(prepared.api_keys),
            # The emulator's published test pair, never real credentials.
            "AWS_ACCESS_KEY_ID": local.EMULATOR_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": local.EMULATOR_SECRET_ACCESS_KEY,
        })
        env.pop("AWS_SESSION_TOKEN", None)
        env.pop("AWS_PROFILE", None)
        env.pop("PROVISIONER_AWS_PROFILE", None)
        key = prepared.api_keys[0]
        print(f"\nlocal mode: service on http://{bind}, AWS IoT emulated at "
              f"{prepared.iot_endpoint}\n\nTry it:\n"
              f"  curl -s -X POST http://{bind}/provision \\\n"
              f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n"
              "    -d '{\"templateName\": \"demo\", \"parameters\": {\"SerialNumber\": \"SN-0001\"}}'"
              "\n", file=sys.stderr, flush=True)
    command = [sys.executable, "-m", "gunicorn", "-c", "python:service.gunicorn_conf",
               "service:create_app()", *sys.argv[1:]]
    process = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: object) -> None:
        # gunicorn drains on SIGTERM; we wait for it, then atexit stops the emulator.
        process.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    return process.wait()


if __name__ == "__main__":
    sys.exit(main())
