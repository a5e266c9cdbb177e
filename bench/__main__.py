"""`python -m bench`: the service against connect-per-request and a direct pool, in one run.

    python -m bench [--seconds 3] [--rounds 3] [--levels 1,8,32] [--flows csr,keys] [--rtt 0,20]
                    [--modes service,connect-per-request,direct-pool,service+device] [--key-algorithm ec|rsa]
                    [--compare BASELINE.json | --baseline-tree DIR]

Per network condition (round-trip time), one emulator (`--send-delay` = the RTT) and one service
(gunicorn, production settings) are started; every cell (flow x callers x mode) runs against that
same pair for `--seconds`, in `--rounds` rounds in which the modes take turns. The table goes to
stdout as cells finish, then the target checks; everything is also written to
bench/results/<date>-<host>.json and latest.json. See docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import secrets
import shlex
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from bench import attested as attestation
from bench import baseline as twins
from bench.compare import DEFAULT_TOLERANCE, load_cells, tolerance_arg
from bench.compare import report as compare_report
from bench.devices import FLOWS, Endpoint, make_csrs
from bench.modes import (
    DEFAULT_MODES,
    MODES,
    Caller,
    ConnectPerRequestCaller,
    DirectPoolCaller,
    ServiceCaller,
)
from bench.processes import EmulatorProcess, ServiceProcess
from bench.report import (
    attestation_lines,
    header,
    row,
    store_lines,
    target_lines,
    targets,
    write_results,
)
from bench.runner import Round, run_cell, run_round, summarise
from bench.stores import stores_for
from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY

RESULTS_DIR = Path(__file__).resolve().parent / "results"
STORES = ("off", "sqlite", "postgresql")
# A scoped key like a factory line's: every rule of the gate is evaluated on every request.
GATED_KEY = {
    "name": "bench",
    "templates": ["demo"],
    "parameterRules": {"SerialNumber": "^[A-Za-z0-9.+-]{1,64}$"},
    "maxProvisions": 1_000_000_000,
    "ratePerMinute": 1_000_000,
}
# The emulator's published SigV4 test pair; botocore's default chain reads it from the env.
AWS_TEST_ENV = {
    "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
    "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET_ACCESS_KEY,
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _list(kind: type, allowed: tuple[str, ...] | None = None) -> Any:
    def parse(text: str) -> list[Any]:
        values = [kind(part.strip()) for part in text.split(",") if part.strip()]
        if not values:
            raise argparse.ArgumentTypeError("give at least one value")
        if allowed is not None and (bad := [v for v in values if v not in allowed]):
            raise argparse.ArgumentTypeError(f"{bad} not in {', '.join(allowed)}")
        return values

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--seconds", type=float, default=3.0, help="time per cell")
    p.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="each cell's time is split into this many rounds, the modes taking turns",
    )
    p.add_argument("--levels", type=_list(int), default="1,8,32", help="concurrent callers")
    p.add_argument(
        "--flows",
        type=_list(str, FLOWS),
        default=",".join(FLOWS),
        help="csr (CreateCertificateFromCsr) and/or keys (CreateKeysAndCertificate)",
    )
    p.add_argument(
        "--rtt",
        type=_list(float),
        default="0,20",
        help="simulated round-trip times in ms (0 = loopback as is)",
    )
    p.add_argument(
        "--modes",
        type=_list(str, MODES),
        default=",".join(DEFAULT_MODES),
        help="which ways of provisioning to run; service+device (needs nginx) runs attested provisions "
        "over mutual TLS beside API-key ones over the same TLS listener, on one service with SQLite "
        "(modes service+device and service+tls)",
    )
    p.add_argument(
        "--key-algorithm",
        choices=["ec", "rsa"],
        default="ec",
        help="the emulator's CreateKeysAndCertificate keys (AWS: rsa; see the docs "
        "for why ec is the default)",
    )
    p.add_argument(
        "--stores",
        type=_list(str, STORES),
        default="off",
        help="the service's store: off (PROVISIONER_DATABASE_URL=off), sqlite, postgresql (a "
        "throwaway local cluster); each is its own service, measured side by side as mode "
        "service (off) or service+<store>, with an issued scoped key and an Idempotency-Key "
        "on every request",
    )
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--pool-size", type=int, default=16, help="MQTT connections per worker")
    p.add_argument("--threads", type=int, default=20, help="gunicorn threads per worker")
    p.add_argument(
        "--pool-wait",
        type=float,
        default=15.0,
        help="PROVISIONER_POOL_WAIT_SECONDS (high, so queued callers get no 503)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=1.0,
        help="untimed service requests per flow and condition before the cells",
    )
    p.add_argument("--csrs", type=int, default=256, help="size of the pre-made EC CSR pool")
    p.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    p.add_argument(
        "--compare",
        type=Path,
        metavar="BASELINE",
        help="end with each figure as a ratio of the same figure in this saved results file "
        "(exit status 3 when one is worse by more than --tolerance); see docs/benchmarks.md",
    )
    p.add_argument(
        "--baseline-tree",
        type=Path,
        metavar="DIR",
        help="a checkout of an earlier commit (git worktree add --detach DIR REV): each service mode "
        "also runs from there as <mode>@baseline, side by side with this tree's in the same rounds, "
        "and the run ends with the comparison --compare prints (exit status 3 on a regression); "
        "service+device's modes share one service and get no twin",
    )
    p.add_argument(
        "--tolerance",
        type=tolerance_arg,
        default=DEFAULT_TOLERANCE,
        help="with --compare: how much worse a figure may be before it counts as a regression",
    )
    return p


def service_env(args: argparse.Namespace, ws_url: str, api_key: str, database_url: str) -> dict[str, str]:
    return {
        "PROVISIONER_DATABASE_URL": database_url,
        "PROVISIONER_IOT_ENDPOINT": ws_url,
        "PROVISIONER_AUTH_MODE": "sigv4",
        "PROVISIONER_AWS_REGION": "us-east-1",
        "PROVISIONER_API_KEYS": api_key,
        "PROVISIONER_POOL_SIZE": str(args.pool_size),
        "PROVISIONER_POOL_WAIT_SECONDS": f"{args.pool_wait:g}",
        "PROVISIONER_THREADS": str(args.threads),
        "PROVISIONER_LOG_LEVEL": "WARNING",
        "PROVISIONER_GRACEFUL_TIMEOUT": "5",
        **AWS_TEST_ENV,
    }


def make_callers(
    mode: str,
    n: int,
    flow: str,
    endpoint: Endpoint,
    services: dict[str, ServiceProcess],
    keys: dict[str, str],
    attested: attestation.AttestedService | None = None,
) -> list[Caller]:
    if mode in attestation.MODES:
        assert attested is not None
        return attestation.callers(mode, n, flow, attested, keys.get(mode, ""))
    if mode.startswith("service"):
        gated = twins.own_mode(mode) != "service"
        return [ServiceCaller(services[mode].port, keys[mode], flow, idempotent=gated) for _ in range(n)]
    if mode == "connect-per-request":
        return [ConnectPerRequestCaller(endpoint, flow) for _ in range(n)]
    return [DirectPoolCaller(endpoint, flow) for _ in range(n)]


def problem_lines(path: Path) -> list[str]:
    markers = (" WARNING ", " ERROR ", " CRITICAL ", "[ERROR]", "[CRITICAL]", "[WARNING]", "Traceback")
    return [line for line in path.read_text(errors="replace").splitlines() if any(m in line for m in markers)]


def expand_modes(modes: list[str], stores: list[str]) -> list[str]:
    """`service` becomes one mode per store: `service` (off) and `service+sqlite`, ..."""
    expanded: list[str] = []
    for mode in modes:
        if mode == "service":
            expanded += ["service" if store == "off" else f"service+{store}" for store in stores]
        elif mode == "service+device":
            expanded += list(attestation.MODES)
        else:
            expanded.append(mode)
    return expanded


def issue_key(port: int, admin_key: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(
            "POST",
            "/admin/keys",
            json.dumps(GATED_KEY).encode(),
            {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"},
        )
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    if response.status != 201:
        raise RuntimeError(f"cannot issue the benchmark key: {response.status} {body}")
    return str(body["apiKey"])


def run_condition(
    args: argparse.Namespace,
    rtt_ms: float,
    csrs: list[Any],
    run_tag: str,
    cells: list[dict[str, Any]],
    logs: dict[str, Any],
    database_urls: dict[str, str],
) -> None:
    api_key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        emulator_log, service_log = Path(tmp) / "emulator.log", Path(tmp) / "service.log"
        baseline_log = Path(tmp) / "service-baseline.log"  # its warnings are not this tree's
        with emulator_log.open("w") as log_file:
            emulator = EmulatorProcess(
                Path(tmp) / "data",
                log_file,
                send_delay=rtt_ms / 1000,
                key_algorithm=args.key_algorithm,
                listeners=("ws",),
            )
        services: dict[str, ServiceProcess] = {}
        keys: dict[str, str] = {}
        modes = expand_modes(args.modes, args.stores)
        if args.baseline_tree is not None:
            modes = twins.with_baselines(modes, excluded=attestation.MODES)
        # Each mode's own serial numbers (thing names), its twin's included.
        tags = {mode: f"m{index}" for index, mode in enumerate(modes)}
        attested: attestation.AttestedService | None = None
        try:
            endpoint = Endpoint(emulator.url("ws"))
            if any(mode in attestation.MODES for mode in modes):
                with service_log.open("a") as log_file:
                    attested = attestation.AttestedService(
                        service_env(args, endpoint.url, api_key, "off"),
                        log_file,
                        workers=args.workers,
                        folder=Path(tmp) / "attested",
                    )
                attested.service.wait_ready(args.pool_size)
                attested.prepare(api_key, max(args.levels))
                keys["service+tls"] = issue_key(attested.service.port, api_key)
            for mode in modes:
                if not mode.startswith("service") or mode in attestation.MODES:
                    continue
                env = service_env(args, endpoint.url, api_key, database_urls[mode])
                tree = args.baseline_tree if twins.is_baseline(mode) else None
                if tree is not None:
                    env["PYTHONPATH"] = str(tree)  # ahead of this checkout's editable install
                with (baseline_log if tree is not None else service_log).open("a") as log_file:
                    services[mode] = ServiceProcess(env, log_file, workers=args.workers, cwd=tree)
            for mode, service in services.items():
                service.wait_ready(args.pool_size)
                gated = twins.own_mode(mode) != "service"
                keys[mode] = issue_key(service.port, api_key) if gated else api_key
            if attested is not None:
                for mode in attestation.MODES:
                    services[mode] = attested.service  # one service: the two modes take turns
            for flow in args.flows:
                for mode in services:
                    if args.warmup > 0:
                        # Untimed: lazy imports in the workers, each link's template subscription.
                        run_cell(
                            make_callers(mode, max(args.levels), flow, endpoint, services, keys, attested),
                            args.warmup,
                            f"{run_tag}w{rtt_ms:g}{flow}{tags[mode]}",
                            csrs,
                            emulator,
                            services[mode],
                        )
                for n in args.levels:
                    # Each cell is split into rounds and the modes take turns, so that a burst
                    # of other work on the machine lands on every mode alike.
                    rounds: dict[str, list[Round]] = {mode: [] for mode in modes}
                    for r in range(args.rounds):
                        turn = r % len(modes)
                        for mode in modes[turn:] + modes[:turn]:
                            rounds[mode].append(
                                run_round(
                                    make_callers(mode, n, flow, endpoint, services, keys, attested),
                                    args.seconds / args.rounds,
                                    f"{run_tag}-{rtt_ms:g}-{flow}-{tags[mode]}-{n}r{r}",
                                    csrs,
                                    emulator,
                                    services.get(mode),
                                )
                            )
                    for mode in modes:
                        cell = {
                            "rtt_ms": rtt_ms,
                            "flow": flow,
                            "mode": mode,
                            "callers": n,
                            **summarise(rounds[mode], measure_service=mode.startswith("service")),
                        }
                        cells.append(cell)
                        print(row(cell), flush=True)
        finally:
            if attested is not None:
                attested.stop()
            for service in services.values():
                service.stop()
            emulator.stop()
        for name, path in (("emulator", emulator_log), ("service", service_log), ("baseline", baseline_log)):
            if not path.exists():
                continue
            lines = problem_lines(path)
            logs[f"{name}@{rtt_ms:g}ms"] = {"warnings_and_errors": len(lines), "first": lines[:5]}
            for line in lines[:5]:
                print(f"{name} log @{rtt_ms:g}ms: {line}", file=sys.stderr)
            if len(lines) > 5:
                print(f"{name} log @{rtt_ms:g}ms: ... {len(lines) - 5} more", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.rounds < 1 or min(args.levels) < 1 or min(args.rtt) < 0:
        parser.error("--seconds must be > 0, --rounds and --levels >= 1, --rtt >= 0")
    if args.compare and args.baseline_tree:
        parser.error("--compare and --baseline-tree are two baselines: give one")
    # read the baseline first: a typo in its path should not cost a whole run
    baseline = load_cells(args.compare) if args.compare else None
    baseline_commit = None
    if args.baseline_tree is not None:
        args.baseline_tree = args.baseline_tree.resolve()
        unusable = twins.check_tree(args.baseline_tree)
        if unusable:
            parser.error(f"--baseline-tree: {unusable}")
        expanded = expand_modes(args.modes, args.stores)
        if twins.with_baselines(expanded, excluded=attestation.MODES) == expanded:
            parser.error(
                "--baseline-tree compares the service: give --modes a service mode besides service+device"
            )
        baseline_commit = twins.commit_of(args.baseline_tree)
    command = shlex.join(["python", "-m", "bench", *argv])
    started = time.monotonic()
    now = datetime.now(UTC)
    hostname = socket.gethostname().split(".")[0]
    machine = {
        "hostname": hostname,
        "cpu_count": os.cpu_count(),
        "cpu_count_physical": psutil.cpu_count(logical=False),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    settings = {
        "seconds_per_cell": args.seconds,
        "rounds_per_cell": args.rounds,
        "levels": args.levels,
        "flows": args.flows,
        "rtt_ms": args.rtt,
        "modes": args.modes,
        "stores": args.stores,
        "emulator_key_algorithm": args.key_algorithm,
        "service": {
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "pool_size_per_worker": args.pool_size,
            "pool_wait_seconds": args.pool_wait,
            "worker_class": "gthread",
            "endpoint": "emulator ws:// + SigV4",
        },
        "mqtt_clients": "paho over ws:// + SigV4, TCP_NODELAY, one flow at a time per connection",
        "warmup_seconds": args.warmup,
        "csr_pool": args.csrs,
    }
    if args.baseline_tree is not None:
        settings["baseline_tree"] = {"path": str(args.baseline_tree), "commit": baseline_commit}
    print(f"# {command}")
    print(
        f"# {now:%Y-%m-%d %H:%M} UTC on {hostname}: {machine['cpu_count']} CPUs, Python {machine['python']}"
    )
    print(
        f"# service: gunicorn gthread, {args.workers} workers x {args.threads} threads, "
        f"pool {args.pool_size}/worker ({args.workers * args.pool_size} MQTT connections), "
        f"PROVISIONER_POOL_WAIT_SECONDS={args.pool_wait:g}"
    )
    print(
        f"# emulator: one per RTT; keys flow uses --key-algorithm {args.key_algorithm}"
        + (
            " (not AWS's RSA 2048: RSA keygen, ~80 ms CPU each here, would saturate the "
            "2 cores and hide every other cost)"
            if args.key_algorithm == "ec"
            else ""
        )
    )
    print(
        f"# {args.seconds:g} s per cell in {args.rounds} rounds, modes taking turns; latencies "
        "in ms; cpu = CPU ms per provision (svc: sum over gunicorn workers; emu: emulator; "
        "cli: this load generator); store = the store's two transactions per provision, wall "
        "time, mean (the service's /metrics); rss = peak RSS of the largest worker; other% = "
        "CPU used by processes outside the benchmark",
        flush=True,
    )
    csrs = make_csrs(args.csrs)
    run_tag = secrets.token_hex(3)
    cells: list[dict[str, Any]] = []
    logs: dict[str, Any] = {}
    if args.baseline_tree is not None:
        print(
            f"# baseline: each service mode also runs from {args.baseline_tree} ({baseline_commit}) "
            f"as <mode>{twins.SUFFIX}, in the same rounds, with a database of its own"
        )
    print(header(), flush=True)
    suffixes = ("", twins.SUFFIX) if args.baseline_tree is not None else ("",)
    with stores_for(args.stores, suffixes=suffixes) as database_urls:
        for rtt_ms in args.rtt:
            run_condition(args, rtt_ms, csrs, run_tag, cells, logs, database_urls)
    if args.baseline_tree is not None:
        baseline, own_cells = twins.split(cells)
    else:
        own_cells = cells
    checks = targets(own_cells, args.flows, args.rtt)
    others = [c["other_processes_pct"] for c in cells]
    if others and max(others) >= 10:
        print(
            f"# note: other processes used {sum(others) / len(others):.0f}% of this machine's CPU "
            f"on average (max {max(others)}%) during the cells: the figures are noisy; rerun "
            "on a quiet machine to compare runs"
        )
    print()
    for line in target_lines(checks) + store_lines(own_cells) + attestation_lines(own_cells):
        print(line)
    elapsed = time.monotonic() - started
    results = {
        "date": now.isoformat(timespec="seconds"),
        "command": command,
        "machine": machine,
        "settings": settings,
        "elapsed_seconds": round(elapsed, 1),
        "cells": cells,
        "targets": checks,
        "logs": logs,
    }
    path = write_results(results, args.results_dir, f"{now:%Y-%m-%d}", hostname)
    print(f"\n# {len(cells)} cells in {elapsed:.0f} s; results: {path} (and latest.json)")
    if baseline is not None:
        print()
        return compare_report(baseline, own_cells, args.tolerance)
    return 0  # a MISS is a finding, not a failed run


if __name__ == "__main__":
    sys.exit(main())
