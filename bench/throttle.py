"""Offered load above AWS's rate limit: what callers get, and the retries /metrics shows.

    python -m bench.throttle [--rate 30] [--seconds 10] [--throttle 20/10] [--max-rate 9]

The emulator throttles every fleet-provisioning call with a token bucket (`*:throttle=RATE/BURST`;
a provision is two calls, so 20/10 allows 10 provisions a second). The service runs under
gunicorn as in production; requests are sent open-loop at `--rate` a second (each on its own
connection, from a thread pool big enough that the sender never waits), so the offered rate does
not drop when the service slows down. Printed: offered and served rates, outcomes (201 / 429 /
other), latency p50/p99, and the throttle retries and final throttles from GET /metrics.
`--max-rate` also sets PROVISIONER_AWS_MAX_RATE (with an SQLite store, shared by the workers).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from bench.processes import ServiceProcess
from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator, Fault

API_KEY = "bench-throttle-key-0123456789"


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def metric_sums(text: str, names: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """{metric sample name: {its 'step' label (or ''): summed value}}."""
    sums: dict[str, dict[str, float]] = {name: {} for name in names}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in sums:
                key = sample.labels.get("step", "")
                sums[sample.name][key] = sums[sample.name].get(key, 0.0) + sample.value
    return sums


def run(args: argparse.Namespace) -> int:
    rate, burst = (float(x) for x in args.throttle.split("/"))
    with (
        tempfile.TemporaryDirectory() as tmp,
        Emulator(data_dir=Path(tmp) / "emulator", key_algorithm="ec") as emulator,
    ):
        emulator.faults.set("*", Fault(throttle=(rate, burst)))
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PROVISIONER_", "AWS_"))},
            "PROVISIONER_IOT_ENDPOINT": emulator.urls["ws"],
            "PROVISIONER_AUTH_MODE": "sigv4",
            "PROVISIONER_AWS_REGION": "us-east-1",
            "PROVISIONER_API_KEYS": API_KEY,
            "PROVISIONER_POOL_SIZE": str(args.pool_size),
            "PROVISIONER_REQUEST_TIMEOUT_SECONDS": f"{args.timeout:g}",
            "PROVISIONER_STEP_TIMEOUT_SECONDS": f"{min(10.0, args.timeout):g}",
            "PROVISIONER_POOL_WAIT_SECONDS": f"{min(2.0, args.timeout / 2):g}",
            "PROVISIONER_LOG_LEVEL": "WARNING",
            "PROVISIONER_DATABASE_URL": f"sqlite:///{tmp}/store.db" if args.max_rate else "off",
            "AWS_ACCESS_KEY_ID": DEFAULT_ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": DEFAULT_SECRET_ACCESS_KEY,
        }
        if args.max_rate:
            env["PROVISIONER_AWS_MAX_RATE"] = f"{args.max_rate:g}"
        log = open(Path(tmp) / "service.log", "w")  # noqa: SIM115 - closed below
        service = ServiceProcess(env, log, workers=args.workers)
        try:
            service.wait_ready(args.pool_size)
            base = f"http://127.0.0.1:{service.port}"
            started = time.monotonic()
            results = offer(base, args.rate, args.seconds)
            args.elapsed = time.monotonic() - started
            metrics = requests.get(
                base + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
            ).text
        finally:
            service.stop()
            log.close()
    report(args, rate, burst, results, metrics)
    return 0


def offer(base: str, per_second: float, seconds: float) -> list[tuple[int, float]]:
    """(status, latency) of every request, sent at a fixed rate whatever the answers take."""
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        body: dict[str, Any] = {"templateName": "demo", "parameters": {"SerialNumber": f"SN-{n:06d}"}}
        started = time.monotonic()
        try:
            status = requests.post(
                base + "/provision", json=body, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=120
            ).status_code
        except requests.RequestException:
            status = 0
        with lock:
            results.append((status, time.monotonic() - started))

    total = int(per_second * seconds)
    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=512) as pool:
        start = time.monotonic()
        for n in range(total):
            time.sleep(max(0.0, start + n / per_second - time.monotonic()))
            futures.append(pool.submit(one, n))
    return results


def report(
    args: argparse.Namespace, rate: float, burst: float, results: list[tuple[int, float]], text: str
) -> None:
    statuses = [status for status, _ in results]
    latencies = [latency * 1000 for _, latency in results]
    created = [latency * 1000 for status, latency in results if status == 201]
    others = sorted({s for s in statuses if s not in (201, 429)})
    sums = metric_sums(
        text,
        (
            "provisioner_aws_throttle_retries_total",
            "provisioner_aws_throttled_requests_total",
            "provisioner_rate_limit_refusals_total",
            "provisioner_aws_pace_wait_seconds_count",
        ),
    )
    retries = sums["provisioner_aws_throttle_retries_total"]
    final = sums["provisioner_aws_throttled_requests_total"]
    print(
        f"emulator limit: {rate:g} calls/s (burst {burst:g}) = {rate / 2:g} provisions/s; "
        f"service: {args.workers} workers x {args.pool_size} connections, deadline {args.timeout:g} s"
        + (f", PROVISIONER_AWS_MAX_RATE={args.max_rate:g}" if args.max_rate else "")
    )
    print(f"offered: {args.rate:g} provisions/s for {args.seconds:g} s = {len(results)} requests")
    print(
        f"outcomes: 201 {statuses.count(201)}, 429 {statuses.count(429)}, "
        f"other {sum(1 for s in statuses if s not in (201, 429))}" + (f" {others}" if others else "")
    )
    print(
        f"served: {statuses.count(201)} in {args.elapsed:.1f} s until the last answer = "
        f"{statuses.count(201) / args.elapsed:.1f} provisions/s"
    )
    print(
        f"latency all: p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms; "
        f"201 only: p50 {percentile(created, 0.5):.0f} ms, p99 {percentile(created, 0.99):.0f} ms"
        + (f"; mean {statistics.fmean(created):.0f} ms" if created else "")
    )
    print(
        "from /metrics: throttle retries "
        + ", ".join(f"{step} {value:g}" for step, value in sorted(retries.items()))
        + f" (total {sum(retries.values()):g}); final throttles (429) "
        + (", ".join(f"{step} {value:g}" for step, value in sorted(final.items())) or "0")
        + f"; pace refusals {sum(sums['provisioner_rate_limit_refusals_total'].values()):g}"
        + f", pace waits {sum(sums['provisioner_aws_pace_wait_seconds_count'].values()):g}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=30, help="offered provisions a second")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--throttle", default="20/10", help="the emulator's calls/s and burst")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=5, help="PROVISIONER_REQUEST_TIMEOUT_SECONDS")
    parser.add_argument("--max-rate", type=float, default=None, help="PROVISIONER_AWS_MAX_RATE")
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
