"""Benchmark the emulator alone: its CSR flow (CreateCertificateFromCsr + RegisterThing) over MQTT.

    python -m bench.emulator_csr [--connections 1,8,32] [--seconds 10] [--send-delay 0]

For each connection count, a fresh emulator runs as a subprocess (so its CPU time is its own and
the registry starts empty), N persistent plain-MQTT connections (the direct pool of `python -m
bench`, without the WebSocket layer) run back-to-back flows for the given time, and one table row
is printed; the same rows follow as one JSON line. `python -m bench` is the full comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from bench.devices import Endpoint, make_csrs
from bench.modes import Caller, DirectPoolCaller
from bench.processes import EmulatorProcess
from bench.runner import run_cell

COLUMNS = ["connections", "flows", "flows_per_s", "p50_ms", "p99_ms", "errors", "emulator_cpu_ms_per_flow"]


def run_level(connections: int, seconds: float, send_delay: float, csrs: list) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-emulator-") as tmp:
        log_path = Path(tmp) / "emulator.log"
        with log_path.open("w") as log_file:
            emulator = EmulatorProcess(
                Path(tmp) / "data", log_file, send_delay=send_delay, listeners=("mqtt",)
            )
        try:
            endpoint = Endpoint(emulator.url("mqtt"))
            callers: list[Caller] = [DirectPoolCaller(endpoint, "csr") for _ in range(connections)]
            cell = run_cell(callers, seconds, f"emu-{connections}", csrs, emulator, None)
        finally:
            emulator.stop()
        for line in log_path.read_text().splitlines():  # WARNING and above only
            print(f"emulator log ({connections} conn): {line}", file=sys.stderr)
    for kind, example in cell["error_examples"].items():
        print(f"{connections} conn: {kind}: {example}", file=sys.stderr)
    return {
        "connections": connections,
        "flows": cell["provisions"],
        "flows_per_s": cell["provisions_per_s"],
        "p50_ms": cell["p50_ms"],
        "p99_ms": cell["p99_ms"],
        "errors": cell["errors"],
        "emulator_cpu_ms_per_flow": cell["emulator_cpu_ms_per_provision"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        prog="python -m bench.emulator_csr", description="Benchmark the emulator's CSR provisioning flow."
    )
    parser.add_argument("--connections", default="1,8,32", help="comma-separated counts")
    parser.add_argument("--seconds", type=float, default=10.0, help="flow time per count")
    parser.add_argument(
        "--send-delay",
        type=float,
        default=0.0,
        help="the emulator's per-packet delay in seconds (simulated network)",
    )
    parser.add_argument("--csrs", type=int, default=500, help="size of the pre-made CSR pool")
    args = parser.parse_args()
    levels = [int(n) for n in args.connections.split(",")]
    csrs = make_csrs(args.csrs)
    print("  ".join(COLUMNS), flush=True)
    rows = []
    for n in levels:
        rows.append(run_level(n, args.seconds, args.send_delay, csrs))
        print("  ".join(f"{str(rows[-1][c]):>{len(c)}}" for c in COLUMNS), flush=True)
    print(json.dumps({"send_delay": args.send_delay, "seconds": args.seconds, "rows": rows}))


if __name__ == "__main__":
    main()
