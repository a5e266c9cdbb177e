"""Benchmark the emulator's CSR flow (CreateCertificateFromCsr + RegisterThing) over plain MQTT.

    python -m bench.emulator_csr [--connections 1,8,32] [--seconds 10] [--send-delay 0]

For each connection count, a fresh emulator runs as a subprocess (so its CPU time is its own and
the registry starts empty), N paho connections each run back-to-back flows for the given time,
and one table row is printed; the same rows follow as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import IO, cast

import paho.mqtt.client as mqtt
import psutil
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

CSR_TOPIC = "$aws/certificates/create-from-csr/json"
REGISTER_TOPIC = "$aws/provisioning-templates/demo/provision/json"
SETUP_TIMEOUT = 10.0   # start-up, CONNACK, SUBACK
FLOW_TIMEOUT = 10.0    # each answer


def make_csrs(count: int) -> list[str]:
    # CSRs are made before timing so the client's signing cost is not in the numbers. AWS (and
    # the emulator) issue a new certificate with a new serial per request, so a pool can be reused.
    csrs = []
    for _ in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench")])
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject)
        csr = builder.sign(key, hashes.SHA256())
        csrs.append(csr.public_bytes(serialization.Encoding.PEM).decode("ascii"))
    return csrs


class Worker:
    """One persistent connection running one flow at a time: the answers carry no correlation
    token, so a second flow in flight on the same connection could take the first one's answer."""

    def __init__(self, port: int, csrs: list[str], offset: int) -> None:
        self.csrs, self.offset = csrs, offset
        self.latencies: list[float] = []
        self.rejected = self.timeouts = 0
        self.answered = threading.Event()
        self.reply: tuple[str, bytes] | None = None
        self.expect = ""
        self.ready = threading.Event()
        self.setup_error = ""
        self.client_id = f"bench-{uuid.uuid4().hex[:12]}"
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id,
                                  protocol=mqtt.MQTTv311, reconnect_on_failure=False)
        # paho never sets TCP_NODELAY; Nagle + delayed ACK would add ~40 ms per round trip.
        self.client.on_socket_open = lambda c, ud, s: cast(socket.socket, s).setsockopt(
            socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.on_disconnect = self._on_disconnect
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    # Callbacks run on paho's loop thread: they only record and signal, never block.
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.setup_error = f"CONNACK {reason_code}"
            self.ready.set()
            return
        # Only one SUBSCRIBE is ever sent per connection, so its SUBACK needs no mid matching.
        client.subscribe([(f"{t}/{a}", 1) for t in (CSR_TOPIC, REGISTER_TOPIC)
                          for a in ("accepted", "rejected")])

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        if any(rc.is_failure for rc in reason_code_list):
            self.setup_error = f"SUBACK {reason_code_list}"
        self.ready.set()

    def _on_message(self, client, userdata, message) -> None:
        # An answer to anything but the request in flight (e.g. a duplicate) is ignored.
        if message.topic.startswith(self.expect) and not self.answered.is_set():
            self.reply = (message.topic, message.payload)
            self.answered.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.setup_error = self.setup_error or f"disconnected: {reason_code}"
        self.ready.set()
        self.answered.set()   # wake a waiting flow at once instead of at its timeout

    def _ask(self, topic: str, body: dict) -> dict | None:
        """Publish and wait for the answer; None (and counted) on rejection or timeout."""
        self.reply, self.expect = None, topic + "/"
        self.answered.clear()
        self.client.publish(topic, json.dumps(body), qos=1)
        if not self.answered.wait(FLOW_TIMEOUT) or self.reply is None:
            self.timeouts += 1
            return None
        answer_topic, payload = self.reply
        if answer_topic.endswith("/rejected"):
            self.rejected += 1
            print(f"rejected on {answer_topic}: {payload[:200]!r}", file=sys.stderr)
            return None
        return json.loads(payload)

    def run(self, start: threading.Event, deadline: float) -> None:
        start.wait(SETUP_TIMEOUT)
        i = 0
        while time.monotonic() < deadline:
            began = time.perf_counter()
            created = self._ask(CSR_TOPIC, {
                "certificateSigningRequest": self.csrs[(self.offset + i) % len(self.csrs)]})
            registered = created and self._ask(REGISTER_TOPIC, {
                "certificateOwnershipToken": created["certificateOwnershipToken"],
                "parameters": {"SerialNumber": f"{self.client_id}-{i}"}})
            if registered:
                self.latencies.append((time.perf_counter() - began) * 1000)
            elif self.timeouts:
                return   # a late answer could pass for the next flow's; retire this connection
            i += 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def start_emulator(data_dir: Path, send_delay: float,
                   log_file: IO[str]) -> tuple[subprocess.Popen, int]:
    # WARNING level: the per-request INFO lines would be most of the emulator's CPU at this rate.
    proc = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--mqtt-port", "0", "--mqtts-port", "off",
         "--ws-port", "off", "--wss-port", "off", "--data-dir", str(data_dir),
         "--key-algorithm", "ec", "--send-delay", str(send_delay), "--log-level", "WARNING"],
        stdout=subprocess.PIPE, stderr=log_file, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], SETUP_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    if not line:
        stop_emulator(proc)
        raise SystemExit(f"emulator did not report ready within {SETUP_TIMEOUT}s")
    return proc, int(json.loads(line)["listeners"]["mqtt"].rsplit(":", 1)[1])


def stop_emulator(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)   # the CLI stops cleanly on SIGINT
    try:
        proc.wait(SETUP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print("emulator ignored SIGINT; killing it", file=sys.stderr)
        proc.kill()
        proc.wait(SETUP_TIMEOUT)


def cpu_seconds(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return times.user + times.system


def run_level(connections: int, seconds: float, send_delay: float, csrs: list[str]) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        log_path = Path(tmp) / "emulator.log"
        with log_path.open("w") as log_file:
            proc, port = start_emulator(Path(tmp) / "data", send_delay, log_file)
        workers: list[Worker] = []
        try:
            workers = [Worker(port, csrs, n * len(csrs) // connections) for n in range(connections)]
            for w in workers:
                if not w.ready.wait(SETUP_TIMEOUT) or w.setup_error:
                    raise SystemExit(f"connection setup failed: {w.setup_error or 'timeout'}")
            start, emulator = threading.Event(), psutil.Process(proc.pid)
            cpu_before, began = cpu_seconds(emulator), time.monotonic()
            threads = [threading.Thread(target=w.run, args=(start, began + seconds))
                       for w in workers]
            for t in threads:
                t.start()
            start.set()
            for t in threads:
                t.join(seconds + 2 * FLOW_TIMEOUT + 5)
            elapsed, cpu = time.monotonic() - began, cpu_seconds(emulator) - cpu_before
        finally:
            for w in workers:
                w.stop()
            stop_emulator(proc)
        for line in log_path.read_text().splitlines():   # WARNING and above only, see above
            print(f"emulator log ({connections} conn): {line}", file=sys.stderr)
    latencies = sorted(x for w in workers for x in w.latencies)
    flows = len(latencies)
    return {
        "connections": connections, "flows": flows, "flows_per_s": round(flows / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 2) if latencies else None,
        "p99_ms": round(latencies[min(flows - 1, int(flows * 0.99))], 2) if latencies else None,
        "errors": sum(w.rejected + w.timeouts for w in workers),
        "emulator_cpu_ms_per_flow": round(cpu * 1000 / flows, 2) if flows else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.emulator_csr",
                                     description="Benchmark the emulator's CSR provisioning flow.")
    parser.add_argument("--connections", default="1,8,32", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="flow time per count")
    parser.add_argument("--send-delay", type=float, default=0.0,
                        help="the emulator's per-packet delay in seconds (simulated network)")
    parser.add_argument("--csrs", type=int, default=500, help="size of the pre-made CSR pool")
    args = parser.parse_args()
    levels = [int(n) for n in args.connections.split(",")]
    csrs = make_csrs(args.csrs)
    columns = ["connections", "flows", "flows_per_s", "p50_ms", "p99_ms", "errors",
               "emulator_cpu_ms_per_flow"]
    print("  ".join(columns), flush=True)
    rows = []
    for n in levels:
        rows.append(run_level(n, args.seconds, args.send_delay, csrs))
        print("  ".join(f"{str(rows[-1][c]):>{len(c)}}" for c in columns), flush=True)
    print(json.dumps({"send_delay": args.send_delay, "seconds": args.seconds, "rows": rows}))


if __name__ == "__main__":
    main()
