"""`python -m bench.faults`: what a mix of MQTT faults costs the service's callers.

    python -m bench.faults [--runs 1] [--calls 300] [--callers 32] [--csr-share 0.8]
                           [--mix late=0.05,never_answer=0.05,drop_connection=0.02,...] [--sweep]

The emulator (in this process, so its fault counters can be read) answers every fleet-provisioning
operation with a fault drawn from the mix (default per operation: 5% late, answered after the
step timeout; 5% never answered; 2% connection dropped right after the request; 5% answered
twice, 0-50 ms apart; 5% handled twice, 0-50 ms apart). The service runs as production does
(gunicorn, 2 workers x 8 connections, step and request timeouts 2 s, pool wait 1 s, no store),
and `--callers` threads send `--calls` POST /provision between them, `--csr-share` of them with a
CSR.

A late, unanswered or dropped operation must fail its call; everything else must not. Printed per
run: calls that met a must-fail fault, failures, **amplification** (failures / calls that met a
must-fail fault: 1.0 means a fault cost only its own request), the 201 share, p50/p99 of the 201s,
MQTT connections the service opened, and **wrong answers** (a 201 whose thing or certificate is not
the caller's; must be 0). docs/benchmarks.md, "Faults".

Every run also counts the **ACTIVE certificates no caller got** once the late answers are in
(AWS registered the thing, the answer was lost). With `--sweep` the service keeps an SQLite store,
records each certificate it got and did not hand out, and sweeps them every second through the
emulator's control plane (docs/lifecycle.md): the run then waits for the sweep and counts again.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import random
import re
import secrets
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bench.__main__ import AWS_TEST_ENV
from bench.baseline import check_tree
from bench.devices import Csr, Evidence, FlowError, make_csrs, mix_up
from bench.modes import ServiceCaller
from bench.processes import ServiceProcess
from bench.runner import percentile
from emulator import Emulator, Fault

# A call fails when one of its operations met one of these.
MUST_FAIL = ("late", "never_answer", "drop_connection")
DEFAULT_MIX = "late=0.05,never_answer=0.05,drop_connection=0.02,answer_twice=0.05,process_twice=0.05"
STEP_TIMEOUT = 2.0
OPERATIONS = ("create_keys_and_certificate", "create_certificate_from_csr", "register_thing")


def fault_for(kind: str, chance: float) -> Fault:
    if kind == "late":
        return Fault(late=STEP_TIMEOUT + 1.0, chance=chance)
    if kind in ("answer_twice", "process_twice"):
        return Fault(**{kind: (0.0, 0.05)}, chance=chance)  # type: ignore[arg-type]
    if kind in ("never_answer", "drop_connection"):
        return Fault(**{kind: True}, chance=chance)  # type: ignore[arg-type]
    raise argparse.ArgumentTypeError(f"unknown fault {kind!r}")


def parse_mix(text: str) -> list[tuple[str, float]]:
    mix = []
    for part in text.split(","):
        kind, _, chance = part.partition("=")
        try:
            mix.append((kind.strip(), float(chance)))
        except ValueError:
            raise argparse.ArgumentTypeError(f"{part!r}: expected KIND=CHANCE") from None
        fault_for(*mix[-1])  # refuse an unknown kind early
    return mix


def service_env(
    emulator: Emulator, api_key: str, pool_size: int, store: Path | None = None
) -> dict[str, str]:
    """`store`: a directory for an SQLite store, with the orphan sweep on (every second)."""
    sweep = (
        {
            "PROVISIONER_DATABASE_URL": f"sqlite:///{store / 'provisioner.db'}",
            "PROVISIONER_CONTROL_ENDPOINT": emulator.urls["control"],
            "PROVISIONER_ORPHAN_SWEEP_SECONDS": "1",
            "PROVISIONER_ORPHAN_GRACE_SECONDS": "0",
        }
        if store is not None
        else {"PROVISIONER_DATABASE_URL": "off"}
    )
    return {
        **sweep,
        "PROVISIONER_IOT_ENDPOINT": emulator.urls["ws"],
        "PROVISIONER_AUTH_MODE": "sigv4",
        "PROVISIONER_AWS_REGION": "us-east-1",
        "PROVISIONER_API_KEYS": api_key,
        "PROVISIONER_POOL_SIZE": str(pool_size),
        "PROVISIONER_POOL_WAIT_SECONDS": "1",
        "PROVISIONER_STEP_TIMEOUT_SECONDS": f"{STEP_TIMEOUT:g}",
        "PROVISIONER_REQUEST_TIMEOUT_SECONDS": f"{STEP_TIMEOUT:g}",
        "PROVISIONER_LOG_LEVEL": "WARNING",
        "PROVISIONER_GRACEFUL_TIMEOUT": "5",
        **AWS_TEST_ENV,
    }


def metric_sum(port: int, api_key: str, name: str) -> float:
    """The sum of a counter's samples over its labels (gunicorn's workers already summed)."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {api_key}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#") and line[len(name)] in " {"
    )


def run_once(
    args: argparse.Namespace, csrs: list[Csr], log_file: Any, tree: Path | None = None
) -> dict[str, Any]:
    """One run; `tree`: run the service from that checkout instead (a baseline, side by side)."""
    api_key = secrets.token_hex(16)
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        emulator = Emulator(data_dir=Path(tmp) / "emulator", key_algorithm="ec").start()
        env = service_env(emulator, api_key, args.pool_size, Path(tmp) if args.sweep else None)
        if tree is not None:
            env["PYTHONPATH"] = str(tree)  # ahead of the editable install on sys.path
        service = ServiceProcess(env, log_file, workers=args.workers, cwd=tree)
        try:
            service.wait_ready(args.pool_size)
            opened_before = connections_opened(service.port, api_key)
            for operation in OPERATIONS:
                for kind, chance in args.mix:
                    emulator.add_fault(operation, fault_for(kind, chance))
            figures = drive(args, service.port, api_key, csrs)
            emulator_met = dict(emulator.faults.met)
            figures["connections_opened"] = connections_opened(service.port, api_key) - opened_before
            emulator.faults.clear()
            figures["must_fail"] = sum(n for (_, kind), n in emulator_met.items() if kind in MUST_FAIL)
            figures["met"] = {f"{op}:{kind}": n for (op, kind), n in sorted(emulator_met.items())}
            registry = {t["thingName"] for t in emulator.registry.list_things()}
            evidence = figures.pop("evidence")
            figures["unregistered_201s"] = sum(1 for e in evidence if e.thing_name not in registry)
            handed_out = {certificate_id(e.certificate_pem.encode()) for e in evidence}
            handed_out.add(certificate_id(emulator.claim_cert_path.read_bytes()))
            time.sleep(STEP_TIMEOUT + 2.0)  # the late answers' registrations are in
            figures["active_unclaimed"] = len(active_unclaimed(emulator, handed_out))
            if args.sweep:
                figures.update(wait_for_sweep(service.port, api_key))
                figures["active_unclaimed_after_sweep"] = len(active_unclaimed(emulator, handed_out))
        finally:
            service.stop()
            emulator.stop()
    failures = args.calls - figures["statuses"].get(201, 0)
    figures["failures"] = failures
    figures["amplification"] = failures / figures["must_fail"] if figures["must_fail"] else None
    return figures


def certificate_id(pem: bytes) -> str:
    """AWS IoT's id of a certificate: the SHA-256 of its DER."""
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def active_unclaimed(emulator: Emulator, handed_out: set[str]) -> set[str]:
    """ACTIVE certificates in the emulator that no caller got (nor the claim)."""
    active = {c["certificateId"] for c in emulator.registry.list_certificates() if c["status"] == "ACTIVE"}
    return active - handed_out


def wait_for_sweep(port: int, api_key: str, timeout: float = 60.0) -> dict[str, Any]:
    """Wait until the workers' sweeps left no orphan pending; the orphan report's counts then."""
    started = time.monotonic()
    while True:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/admin/orphans?limit=1", headers={"Authorization": f"Bearer {api_key}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            counts = {f"{c['kind']} {c['state']}": c["count"] for c in json.load(response)["counts"]}
        pending = sum(n for name, n in counts.items() if name.endswith(" pending"))
        if pending == 0 or time.monotonic() - started > timeout:
            return {"orphans": counts, "sweep_wait_seconds": round(time.monotonic() - started, 1)}
        time.sleep(0.5)


def connections_opened(port: int, api_key: str) -> float:
    return metric_sum(port, api_key, "provisioner_mqtt_connections_opened_total") + metric_sum(
        port, api_key, "provisioner_mqtt_reconnects_total"
    )


def drive(args: argparse.Namespace, port: int, api_key: str, csrs: list[Csr]) -> dict[str, Any]:
    calls = iter(range(args.calls))
    lock = threading.Lock()
    statuses: Counter[int | str] = Counter()
    latencies: list[float] = []
    evidence: list[Evidence] = []
    wrong: list[str] = []
    reasons: Counter[str] = Counter()

    def caller(index: int) -> None:
        rng = random.Random(index)
        while True:
            with lock:
                n = next(calls, None)
            if n is None:
                break
            flow = "csr" if rng.random() < args.csr_share else "keys"
            started = time.perf_counter()
            # A connection per call: a kept-alive one that gunicorn closed while idle would fail
            # the next call on the client's side (a broken pipe) and blur the figures.
            one = ServiceCaller(port, api_key, flow)
            try:
                answer = one.provision(f"F-{n:05d}-{secrets.token_hex(3)}", csrs[n % len(csrs)])
                status: int | str = 201
            except FlowError as error:
                answer, status = None, _status(error.kind)
                with lock:
                    reasons[re.sub(r"\d+(\.\d+)?", "N", str(error))[:150]] += 1
            finally:
                one.teardown()
            elapsed = (time.perf_counter() - started) * 1000
            problem = mix_up(answer) if answer is not None else None
            with lock:
                statuses[status] += 1
                if answer is not None:
                    latencies.append(elapsed)
                    evidence.append(answer)
                    if problem:
                        wrong.append(problem)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(args.callers)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    latencies.sort()
    return {
        "seconds": time.perf_counter() - started,
        "statuses": dict(statuses),
        "p50_ms": percentile(latencies, 0.5) if latencies else None,
        "p99_ms": percentile(latencies, 0.99) if latencies else None,
        "wrong_answers": len(wrong),
        "wrong_examples": wrong[:3],
        "reasons": dict(reasons.most_common()),
        "evidence": evidence,
    }


def _status(kind: str) -> int | str:
    return int(kind.split()[1]) if kind.startswith("HTTP ") else kind


def line(run: int, f: dict[str, Any]) -> str:
    ok = f["statuses"].get(201, 0)
    others = ", ".join(f"{k}: {v}" for k, v in sorted(f["statuses"].items(), key=str) if k != 201)
    amplification = f"{f['amplification']:.2f}" if f["amplification"] is not None else "-"
    return (
        f"run {run}: {ok}/{sum(f['statuses'].values())} 201 ({others or 'no failures'}); "
        f"must-fail {f['must_fail']}, failures {f['failures']}, amplification {amplification}; "
        f"201 p50 {f['p50_ms']:.0f} ms, p99 {f['p99_ms']:.0f} ms; "
        f"connections opened {f['connections_opened']:.0f}; wrong answers {f['wrong_answers']}"
        + (f"; 201s with no thing in the registry {f['unregistered_201s']}" if f["unregistered_201s"] else "")
        + f"; ACTIVE certificates no caller got {f['active_unclaimed']}"
        + (
            f" -> {f['active_unclaimed_after_sweep']} after the sweep ({f['sweep_wait_seconds']} s more; "
            + ", ".join(f"{k} {v}" for k, v in sorted(f["orphans"].items()))
            + ")"
            if "orphans" in f
            else ""
        )
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.faults", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--callers", type=int, default=32)
    parser.add_argument("--csr-share", type=float, default=0.8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=8)
    parser.add_argument("--mix", type=parse_mix, default=parse_mix(DEFAULT_MIX))
    parser.add_argument("--json", type=Path, help="also write every run's figures here")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="run the service with an SQLite store and the orphan sweep on (every second, through the "
        "emulator's control plane), and count the ACTIVE certificates no caller got after it",
    )
    parser.add_argument(
        "--baseline-tree",
        type=Path,
        help="a checkout of an earlier commit (git worktree add): each run also runs the service "
        "from there, just before this tree's, and the summary compares the two",
    )
    args = parser.parse_args(argv)
    if args.baseline_tree is not None and (unusable := check_tree(args.baseline_tree.resolve())):
        parser.error(f"--baseline-tree: {unusable}")
    # Answers to connections the service has already replaced are expected here: not worth a line each.
    logging.getLogger("emulator").setLevel(logging.ERROR)
    csrs = make_csrs(64)
    print(f"fault mix per operation: {', '.join(f'{k} {c:.0%}' for k, c in args.mix)}", flush=True)
    runs: dict[str, list[dict[str, Any]]] = {"baseline": [], "this tree": []}
    trees = [("baseline", args.baseline_tree)] if args.baseline_tree else []
    trees.append(("this tree", None))
    with tempfile.NamedTemporaryFile("w", prefix="bench-faults-service-", suffix=".log", delete=False) as log:
        for run in range(1, args.runs + 1):
            for name, tree in trees:
                figures = run_once(args, csrs, log, tree)
                runs[name].append(figures)
                print(f"{name}: " + line(run, figures), flush=True)
                for reason, count in figures["reasons"].items():
                    print(f"    {count:4d} x {reason}")
    print(f"service log: {log.name}")
    for name, _ in trees:
        print(f"{name}: " + summary(runs[name]))
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2, default=str))
    return 1 if any(f["wrong_answers"] for f in runs["this tree"]) else 0


def summary(runs: list[dict[str, Any]]) -> str:
    def median(key: str) -> float:
        values = sorted(f[key] for f in runs if f[key] is not None)
        return values[len(values) // 2] if values else float("nan")

    share = sorted(f["statuses"].get(201, 0) / sum(f["statuses"].values()) for f in runs)
    return (
        f"{len(runs)} runs, medians: amplification {median('amplification'):.2f} (target <= 1.5), "
        f"201 share {share[len(share) // 2]:.0%}, 201 p50 {median('p50_ms'):.0f} ms, "
        f"p99 {median('p99_ms'):.0f} ms, connections opened {median('connections_opened'):.0f}; "
        f"wrong answers {sum(f['wrong_answers'] for f in runs)} in all (target 0)"
    )


if __name__ == "__main__":
    sys.exit(main())
