"""Running callers: one round is N callers, each on its own thread, provisioning back to back for
a fixed time; a cell's figures are the sum of its rounds.

Callers stop starting flows at the deadline; the round ends when the last one finishes, and CPU
times are read at both ends of that window. Answers are checked for mix-ups afterwards, so the
check costs no CPU inside the window.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

from bench.devices import Csr, Evidence, FlowError, mix_up
from bench.modes import Caller
from bench.processes import EmulatorProcess, ServiceProcess, cpu_seconds

JOIN_SLACK = 30.0  # beyond the round time: the longest a flow may still run


@dataclass
class CallerLog:
    latencies_ms: list[float] = field(default_factory=list)
    evidence: list[Evidence] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)


@dataclass
class Round:
    """What one round measured, before summing rounds into a cell."""

    logs: list[CallerLog]
    seconds: float = 0.0
    cpu: Counter[str] = field(default_factory=Counter)  # CPU seconds by meter
    service_peak_rss: list[int] = field(default_factory=list)
    restarted: bool = False  # a gunicorn worker was replaced during the round
    # The store's transactions, from the service's /metrics: their seconds, and provisions checked.
    store_seconds: float = 0.0
    store_checks: float = 0.0
    setup_failed: bool = False


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    rank = max(1, int(-(-fraction * len(sorted_values) // 1)))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def _drive(
    caller: Caller,
    log: CallerLog,
    serial_prefix: str,
    csrs: Sequence[Csr],
    offset: int,
    ready: threading.Barrier,
    start: threading.Event,
    deadline: list[float],
    done: threading.Barrier,
    release: threading.Event,
) -> None:
    try:
        caller.setup()
    except FlowError as exc:
        log.errors[f"setup {exc.kind}"] += 1
        log.examples.setdefault(f"setup {exc.kind}", str(exc))
        ready.abort()
        return
    try:
        ready.wait()
        start.wait()
        i = 0
        while time.monotonic() < deadline[0]:
            serial = f"{serial_prefix}-{i}"
            began = time.perf_counter()
            try:
                evidence = caller.provision(serial, csrs[(offset + i) % len(csrs)])
            except FlowError as exc:
                log.errors[exc.kind] += 1
                log.examples.setdefault(exc.kind, str(exc)[:300])
            except (KeyError, ValueError, TypeError) as exc:
                # An answer without the fields a flow needs: counted and shown, not fatal.
                kind = f"malformed answer ({type(exc).__name__})"
                log.errors[kind] += 1
                log.examples.setdefault(kind, repr(exc)[:300])
            else:
                log.latencies_ms.append((time.perf_counter() - began) * 1000)
                log.evidence.append(evidence)
            i += 1
        done.wait()
        release.wait(JOIN_SLACK)
    except threading.BrokenBarrierError:
        pass
    finally:
        caller.teardown()


def run_round(
    callers: list[Caller],
    seconds: float,
    serial_prefix: str,
    csrs: Sequence[Csr],
    emulator: EmulatorProcess,
    service: ServiceProcess | None,
) -> Round:
    n = len(callers)
    result = Round([CallerLog() for _ in callers])
    ready, done = threading.Barrier(n + 1), threading.Barrier(n + 1)
    start, release = threading.Event(), threading.Event()
    deadline = [0.0]
    threads = [
        threading.Thread(
            target=_drive,
            name=f"caller-{k}",
            args=(
                caller,
                result.logs[k],
                f"{serial_prefix}-{k}",
                csrs,
                k * len(csrs) // n,
                ready,
                start,
                deadline,
                done,
                release,
            ),
        )
        for k, caller in enumerate(callers)
    ]
    for t in threads:
        t.start()
    me = psutil.Process()
    try:
        ready.wait(JOIN_SLACK)
    except threading.BrokenBarrierError:
        release.set()
        for t in threads:
            t.join(JOIN_SLACK)
        result.setup_failed = True
        return result

    service_pids = service.worker_pids() if service else []
    store_before = service.store_seconds() if service else (0.0, 0.0)
    before = _meters(emulator, service, me)
    began = time.monotonic()
    deadline[0] = began + seconds
    start.set()
    try:
        done.wait(seconds + JOIN_SLACK)
    except threading.BrokenBarrierError:
        pass
    result.seconds = time.monotonic() - began
    after = _meters(emulator, service, me)
    store_after = service.store_seconds() if service else (0.0, 0.0)
    result.store_seconds = store_after[0] - store_before[0]
    result.store_checks = store_after[1] - store_before[1]
    release.set()
    for t in threads:
        t.join(JOIN_SLACK)
    result.cpu = Counter({key: after[key] - before[key] for key in before})
    if service is not None:
        result.service_peak_rss = service.peak_rss_bytes()
        result.restarted = service.worker_pids() != service_pids
    return result


def _meters(
    emulator: EmulatorProcess, service: ServiceProcess | None, me: psutil.Process
) -> dict[str, float]:
    machine = psutil.cpu_times()
    idle = machine.idle + getattr(machine, "iowait", 0.0)
    return {
        "emulator": emulator.cpu_seconds(),
        "service": service.cpu_seconds() if service else 0.0,
        "client": cpu_seconds(me),
        "machine_total": sum(machine),
        "machine_busy": sum(machine) - idle,
        # The kernel's network processing, here our loopback traffic.
        "softirq": getattr(machine, "softirq", 0.0),
    }


def summarise(rounds: list[Round], *, measure_service: bool) -> dict[str, Any]:
    """One cell's figures from its rounds; the service's CPU and RSS only if `measure_service`
    (its CPU is metered in every round anyway, to balance the machine's CPU)."""
    logs = [log for r in rounds for log in r.logs]
    latencies = sorted(x for log in logs for x in log.latencies_ms)
    errors: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for log in logs:
        errors.update(log.errors)
        for kind, text in log.examples.items():
            examples.setdefault(kind, text)
        for evidence in log.evidence:
            why = mix_up(evidence)
            if why is not None:
                errors["mixed up"] += 1
                examples.setdefault("mixed up", why)
    errors["setup"] += sum(r.setup_failed for r in rounds)
    errors["worker restarted"] += sum(r.restarted for r in rounds)
    errors = +errors  # drop zero counts
    elapsed = sum(r.seconds for r in rounds)
    cpu: Counter[str] = sum((r.cpu for r in rounds), Counter())
    ok = len(latencies) - errors["mixed up"]

    def per_ok(seconds: float) -> float | None:
        return round(seconds * 1000 / ok, 2) if ok else None

    # CPU that neither the emulator, the service, this load generator nor the kernel's network
    # processing used: other work on the machine, which makes a cell's figures noisy.
    ours = cpu["emulator"] + cpu["service"] + cpu["client"] + cpu["softirq"]
    capacity = cpu["machine_total"]
    result: dict[str, Any] = {
        "provisions": ok,
        "rounds": len(rounds),
        "seconds": round(elapsed, 2),
        "provisions_per_s": round(ok / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "errors": sum(errors.values()),
        "errors_by_kind": dict(errors),
        "error_examples": examples,
        "service_cpu_ms_per_provision": per_ok(cpu["service"]) if measure_service else None,
        "store_ms_per_provision": _store_ms(rounds) if measure_service else None,
        "emulator_cpu_ms_per_provision": per_ok(cpu["emulator"]),
        "client_cpu_ms_per_provision": per_ok(cpu["client"]),
        "machine_busy_pct": round(100 * cpu["machine_busy"] / capacity) if capacity else 0,
        "other_processes_pct": (
            round(100 * max(0.0, cpu["machine_busy"] - ours) / capacity) if capacity else 0
        ),
    }
    if measure_service:
        peaks = [r.service_peak_rss for r in rounds if r.service_peak_rss]
        if peaks:
            # The high-water mark per worker since it started: the last round's is the largest.
            result["service_peak_rss_mb"] = [round(b / 2**20, 1) for b in peaks[-1]]
    return result


def run_cell(
    callers: list[Caller],
    seconds: float,
    serial_prefix: str,
    csrs: Sequence[Csr],
    emulator: EmulatorProcess,
    service: ServiceProcess | None,
) -> dict[str, Any]:
    """One round, summarised: a cell of its own (warm-up, `python -m bench.emulator_csr`)."""
    return summarise(
        [run_round(callers, seconds, serial_prefix, csrs, emulator, service)],
        measure_service=service is not None,
    )


def _store_ms(rounds: list[Round]) -> float | None:
    """Mean wall time of the store's two transactions per provision checked (None: not told)."""
    checks = sum(r.store_checks for r in rounds)
    return round(sum(r.store_seconds for r in rounds) * 1000 / checks, 2) if checks else None
