"""The image alone and the quick-start compose, as a new user runs them.

The image: non-root, no source tree or build leftovers, refuses an example's placeholder key;
`docker run IMAGE` with nothing set runs in local mode (/healthz, a provision with the key it
prints, `iot-factory` inside it); with PROVISIONER_BIND moved and the key from a file, the
HEALTHCHECK follows. docker-compose.yml: the emulator healthy by its own check, a provision
through nginx, and only nginx published beyond 127.0.0.1.
Run by tests/containers/run.sh after `docker-compose.production.yml build` made the image.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
import tempfile
import time
from pathlib import Path

import httpx
from device_keys import make_csr
from stack import (
    IMAGE,
    CheckFailed,
    Compose,
    address,
    answers,
    expect,
    health,
    image_size_mb,
    in_image,
    inspect,
    log,
    logs,
    run,
    wait_for,
)

LOCAL_PORT = int(os.environ.get("CONTAINER_TEST_LOCAL_PORT", "18001"))
BIND_PORT = int(os.environ.get("CONTAINER_TEST_BIND_PORT", "18002"))
QUICK_PORT = int(os.environ.get("CONTAINER_TEST_QUICK_PORT", "18003"))
LOCAL, MOVED, IP_TAKER = "iotprov-ci-local", "iotprov-ci-bind", "iotprov-ci-ip-taker"
EMULATOR_DATA = "/var/lib/provisioner/emulator"


def provision(base: str, key: str, serial: str) -> dict[str, str]:
    _, csr = make_csr(serial)
    body = {"templateName": "demo", "parameters": {"SerialNumber": serial}, "csr": csr}
    response = httpx.post(
        f"{base}/provision", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    expect(
        response.status_code == 201,
        f"POST /provision at {base} -> {response.status_code} {response.text[:300]}",
    )
    answer: dict[str, str] = response.json()
    return answer


def check_image_contents() -> None:
    user = in_image("id -u").strip()
    leftovers = in_image(
        "ls -d /app /src /build 2>/dev/null; find /opt/provisioner -name '*.egg-info'"
    ).split()
    log(f"image: {IMAGE} {image_size_mb():.0f} MB, runs as uid {user}, leftovers {leftovers}")
    expect(user not in ("", "0"), f"the image runs as uid {user!r}")
    expect(not leftovers, f"source tree or build leftovers in the image: {leftovers}")
    placeholder = ["-e", "PROVISIONER_IOT_ENDPOINT=mqtt://emulator:1883"]
    placeholder += ["-e", "PROVISIONER_API_KEYS=change-me-to-a-long-random-key"]
    refused = in_image(
        "gunicorn -c python:service.serving.gunicorn_conf 'service:create_app()' 2>&1; echo exit=$?",
        *placeholder,
    )
    log(f"image with PROVISIONER_API_KEYS=change-me-...: {refused.strip().splitlines()[-2:]}")
    expect("placeholder" in refused and "exit=2" in refused, f"a placeholder key did not refuse: {refused}")


def check_local_mode(secrets_dir: Path) -> None:
    # Both at once: nothing set (local mode as `docker run IMAGE`), and the bind moved with the
    # key read from a file (PROVISIONER_API_KEYS_FILE, as a mounted secret).
    key = secrets.token_hex(24)
    (secrets_dir / "api_keys").write_text(key + "\n")
    (secrets_dir / "api_keys").chmod(0o644)  # the image's user is not this host's
    for name in (LOCAL, MOVED):
        run(["docker", "rm", "-f", name], timeout=60, check=False)
    started = time.monotonic()
    run(["docker", "run", "-d", "--name", LOCAL, "-p", f"127.0.0.1:{LOCAL_PORT}:8000", IMAGE], timeout=60)
    moved = ["-e", "PROVISIONER_BIND=0.0.0.0:9000", "-e", "PROVISIONER_API_KEYS_FILE=/run/secrets/api_keys"]
    moved += [
        "-v",
        f"{secrets_dir / 'api_keys'}:/run/secrets/api_keys:ro",
        "-p",
        f"127.0.0.1:{BIND_PORT}:9000",
    ]
    run(["docker", "run", "-d", "--name", MOVED, *moved, IMAGE], timeout=60)
    base = f"http://127.0.0.1:{LOCAL_PORT}"
    wait_for("/healthz of the image alone", lambda: answers(base + "/healthz"), 90)
    log(f"local mode: /healthz 200 after {time.monotonic() - started:.0f} s")
    printed = re.search(r"generated API key.*\n\s+(\S+)", logs(LOCAL))
    expect(printed is not None, "local mode printed no generated API key")
    assert printed is not None
    answer = provision(base, printed.group(1), "SN-IMG-000001")
    log(f"local mode: POST /provision -> 201 {answer['thingName']}")

    factory_env = [
        "-e",
        "IOT_FACTORY_URL=http://127.0.0.1:8000",
        "-e",
        f"IOT_FACTORY_API_KEY={printed.group(1)}",
    ]
    out = run(
        [
            "docker",
            "exec",
            *factory_env,
            LOCAL,
            "iot-factory",
            "device",
            "--template",
            "demo",
            "--param",
            "SerialNumber=SN-IMG-000002",
            "--out",
            "/tmp/devices",
            "--ca-file",
            f"{EMULATOR_DATA}/ca.pem",
        ],
        timeout=120,
    )
    files = run(["docker", "exec", LOCAL, "ls", "/tmp/devices/demo-SN-IMG-000002"], timeout=60).split()
    listing = [
        "docker",
        "exec",
        LOCAL,
        "python",
        "-m",
        "emulator",
        "list",
        "things",
        "--data-dir",
        EMULATOR_DATA,
    ]
    things = json.loads(run(listing, timeout=60))
    names = sorted(t["thingName"] for t in things)
    log(f"iot-factory in the image: {out.strip().splitlines()[-1:]}, wrote {files}; things {names}")
    expect(
        {"certificate.pem", "private.key", "ca.pem", "config.json"} <= set(files),
        f"iot-factory wrote {files}",
    )
    expect(names == ["demo-SN-IMG-000001", "demo-SN-IMG-000002"], f"things: {names}")

    wait_for(f"{LOCAL} healthy", lambda: health(LOCAL) == "healthy", 60)
    wait_for(f"{MOVED} healthy (PROVISIONER_BIND=0.0.0.0:9000)", lambda: health(MOVED) == "healthy", 90)
    answer = provision(f"http://127.0.0.1:{BIND_PORT}", key, "SN-IMG-000003")
    log(
        f"HEALTHCHECK: healthy on 8000 and on PROVISIONER_BIND=0.0.0.0:9000; "
        f"PROVISIONER_API_KEYS_FILE's key -> 201 {answer['thingName']}"
    )
    for name in (LOCAL, MOVED):
        run(["docker", "rm", "-f", name], timeout=60, check=False)


def check_quick_start() -> None:
    stack = Compose(
        "docker-compose.yml",
        "iotprov-ci-quick",
        {
            "PROVISIONER_API_KEYS": secrets.token_hex(24),
            "PROVISIONER_HTTP_PORT": str(QUICK_PORT),
            "EMULATOR_MQTTS_PORT": str(QUICK_PORT + 1),
            "EMULATOR_WSS_PORT": str(QUICK_PORT + 2),
        },
    )
    try:
        started = time.monotonic()
        stack("up", "-d", timeout=300)
        base = f"http://127.0.0.1:{QUICK_PORT}"
        wait_for("/readyz through nginx", lambda: answers(base + "/readyz"), 90)
        (emulator,) = stack.containers("emulator")
        wait_for("the emulator healthy", lambda: health(emulator) == "healthy", 60)
        answer = provision(base, stack.env["PROVISIONER_API_KEYS"], "SN-QS-000001")
        published = {}
        for service in ("emulator", "service", "nginx"):
            (container,) = stack.containers(service)
            ports = inspect(container)["NetworkSettings"]["Ports"] or {}
            published[service] = sorted(
                f"{b['HostIp']}:{b['HostPort']}" for binds in ports.values() if binds for b in binds
            )
        log(
            f"docker-compose.yml: ready in {time.monotonic() - started:.0f} s, emulator {health(emulator)}, "
            f"201 {answer['thingName']} through nginx; published {published}"
        )
        expect(published["service"] == [], f"the service is published: {published['service']}")
        expect(
            all(p.startswith("127.0.0.1:") for p in published["emulator"]),
            f"emulator: {published['emulator']}",
        )
        expect(any(p.endswith(f":{QUICK_PORT}") for p in published["nginx"]), f"nginx: {published['nginx']}")

        # The service recreated at another address (a container takes its old one meanwhile):
        # nginx, not restarted, finds it through Docker's DNS.
        (service,) = stack.containers("service")
        before = address(service)
        stack("stop", "service", timeout=120)
        network = next(iter(inspect(emulator)["NetworkSettings"]["Networks"]))
        run(
            ["docker", "run", "-d", "--rm", "--name", IP_TAKER, "--network", network, IMAGE, "sleep", "120"],
            timeout=60,
        )
        stack("up", "-d", "--force-recreate", "--no-deps", "service", timeout=300)
        (service,) = stack.containers("service")
        after = address(service)
        wait_for("/readyz through nginx after the recreate", lambda: answers(base + "/readyz"), 90)
        answer = provision(base, stack.env["PROVISIONER_API_KEYS"], "SN-QS-000002")
        log(
            f"docker-compose.yml: service recreated, {before} -> {after}; nginx not restarted: "
            f"201 {answer['thingName']}"
        )
        expect(after != before, f"the recreated service kept its address {before}: nothing was shown")
    finally:
        run(["docker", "rm", "-f", IP_TAKER], timeout=60, check=False)
        stack("down", "-v", "--remove-orphans", timeout=120, check=False)


def main() -> int:
    started = time.monotonic()
    try:
        check_image_contents()
        with tempfile.TemporaryDirectory() as secrets_dir:
            check_local_mode(Path(secrets_dir))
        check_quick_start()
    except CheckFailed as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        for name in (LOCAL, MOVED):
            print(f"--- {name}\n{logs(name)[-3000:]}", file=sys.stderr)
        return 1
    finally:
        for name in (LOCAL, MOVED):
            run(["docker", "rm", "-f", name], timeout=60, check=False)
    log(f"image and quick start: all checks held in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
