"""`python -m bench.slow_clients`: slow clients against gunicorn directly and through nginx.

    python -m bench.slow_clients [--headers 40] [--bodies 40] [--seconds 8]

Raw sockets trickle header lines (one every `interval`) or a 60 kB body (100 bytes every
`interval`); meanwhile GET /healthz and POST /provision are timed. Printed per shape: the slow
connections the server still held at the end, /healthz p50/p99 (and timeouts past 2 s), provision
p50/p99 (and failures). `SlowClients` and `measure` are also what tests/service/test_production.py
runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

from service.serving.launcher import gunicorn_command

BODY_BYTES = 60_000
PROBE_TIMEOUT = 2.0


class SlowClients:
    """`headers` connections trickling header lines, `bodies` trickling a body, until `stop()`."""

    def __init__(
        self, host: str, port: int, api_key: str, *, headers: int, bodies: int, interval: float = 0.5
    ) -> None:
        self.address = (host, port)
        self.api_key = api_key  # a valid key: the body is read only once the key is accepted
        self.interval = interval
        self.counts = (headers, bodies)
        self.sockets: list[socket.socket] = []
        self.closed: set[socket.socket] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)

    def start(self) -> SlowClients:
        headers, bodies = self.counts
        for number in range(headers + bodies):
            sock = socket.create_connection(self.address, timeout=5)
            if number < headers:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: slow\r\n")
            else:
                sock.sendall(
                    b"POST /provision HTTP/1.1\r\nHost: slow\r\nContent-Type: application/json\r\n"
                    b"Authorization: Bearer %s\r\n"
                    b"Content-Length: %d\r\n\r\n{" % (self.api_key.encode(), BODY_BYTES)
                )
            self.sockets.append(sock)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        line = 0
        while not self._stop.wait(self.interval):
            line += 1
            for index, sock in enumerate(self.sockets):
                if sock in self.closed:
                    continue
                data = b"X-Slow-%d: a\r\n" % line if index < self.counts[0] else b" " * 100
                try:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable and not sock.recv(65536):
                        raise ConnectionResetError
                    sock.sendall(data)
                except OSError:
                    self.closed.add(sock)

    def held(self) -> int:
        """How many slow connections are still open (the server has not given up on them)."""
        return len(self.sockets) - len(self.closed)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for sock in self.sockets:
            sock.close()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(base: str, api_key: str, *, seconds: float, provisions: int = 10) -> dict[str, Any]:
    """Time GET /healthz every 20 ms for `seconds`, and `provisions` POST /provision meanwhile."""
    health: list[float] = []
    health_failures = 0
    provision_times: list[float] = []
    provision_failures: list[str] = []

    # A new connection for every probe, as independent callers make: a kept-alive connection
    # would stay with whichever worker first accepted it.
    def provision_loop() -> None:
        with contextlib.nullcontext(requests) as session:
            for number in range(provisions):
                started = time.monotonic()
                try:
                    response = session.post(
                        base + "/provision",
                        json={
                            "templateName": "demo",
                            "parameters": {"SerialNumber": f"SLOW-{os.getpid()}-{number}"},
                        },
                        headers={"Authorization": f"Bearer {api_key}"},
                        timeout=10,
                    )
                    if response.status_code == 201:
                        provision_times.append(time.monotonic() - started)
                    else:
                        provision_failures.append(f"{response.status_code}: {response.text[:200]}")
                except requests.RequestException as error:
                    provision_failures.append(type(error).__name__)
                time.sleep(seconds / provisions / 2)

    provisioner = threading.Thread(target=provision_loop, daemon=True)
    provisioner.start()
    deadline = time.monotonic() + seconds
    with contextlib.nullcontext(requests) as session:
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                ok = session.get(base + "/healthz", timeout=PROBE_TIMEOUT).status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                health.append(time.monotonic() - started)
            else:
                health_failures += 1
            time.sleep(0.02)
    provisioner.join(30)
    return {
        "healthz_p50_ms": percentile(health, 0.5) * 1000,
        "healthz_p99_ms": percentile(health, 0.99) * 1000,
        "healthz_ok": len(health),
        "healthz_failed": health_failures,
        "provision_p50_ms": percentile(provision_times, 0.5) * 1000,
        "provision_p99_ms": percentile(provision_times, 0.99) * 1000,
        "provision_ok": len(provision_times),
        "provision_failed": provision_failures,
    }


def _wait_http(base: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode}")
        try:
            if requests.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{base} not ready in time")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_shape(shape: str, env: dict[str, str], args: argparse.Namespace, work: Path) -> dict[str, Any]:
    port = _free_port()
    env = {**env, "PROVISIONER_BIND": f"127.0.0.1:{port}"}
    if shape == "direct":
        command = gunicorn_command()
    else:
        command = [sys.executable, "-m", "service.serving.production", "--run-dir", str(work / "run")]
    with open(work / f"{shape}.log", "ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_http(base, process)
        api_key = env["PROVISIONER_API_KEYS"]
        clients = SlowClients("127.0.0.1", port, api_key, headers=args.headers, bodies=args.bodies).start()
        try:
            time.sleep(1)  # the slow connections are in place before the probes start
            result = measure(base, api_key, seconds=args.seconds)
            result["held"] = clients.held()
        finally:
            clients.stop()
        return result
    finally:
        process.terminate()
        process.wait(30)


def main(argv: list[str] | None = None) -> int:
    from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--headers", type=int, default=40)
    parser.add_argument("--bodies", type=int, default=40)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--pool-size", default="4")
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(data_dir=Path(tmp) / "emulator", key_algorithm="ec") as em,
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "AWS_"))},
            "PROVISIONER_IOT_ENDPOINT": em.urls["wss"],
            "PROVISIONER_AUTH_MODE": "sigv4",
            "PROVISIONER_AWS_REGION": "us-east-1",
            "PROVISIONER_CA_FILE": str(em.ca_path),
            "PROVISIONER_API_KEYS": "bench-slow-clients-0123456789",
            "PROVISIONER_DATABASE_URL": "off",
            "PROVISIONER_WORKERS": args.workers,
            "PROVISIONER_POOL_SIZE": args.pool_size,
            "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET_ACCESS_KEY,
        }
        print(
            f"{args.headers} slow-header + {args.bodies} slow-body connections, {args.seconds:g} s; "
            f"gunicorn {args.workers} workers x {2 * int(args.pool_size)} threads"
        )
        print(
            f"{'shape':<14}{'held':>6}{'healthz p50':>13}{'p99':>10}{'ok/failed':>11}"
            f"{'provision p50':>15}{'p99':>10}{'ok/failed':>11}"
        )
        for shape in ("direct", "through-nginx"):
            work = Path(tmp) / shape
            work.mkdir()
            r = run_shape(shape, env, args, work)
            print(
                f"{shape:<14}{r['held']:>6}{r['healthz_p50_ms']:>11.1f}ms{r['healthz_p99_ms']:>8.1f}ms"
                f"{r['healthz_ok']:>6}/{r['healthz_failed']:<4}{r['provision_p50_ms']:>13.1f}ms"
                f"{r['provision_p99_ms']:>8.1f}ms{r['provision_ok']:>6}/{len(r['provision_failed']):<4}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
