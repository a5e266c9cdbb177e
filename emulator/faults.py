"""Fault injection for testing clients, per fleet-provisioning operation.

A `Fault` says what to do to the next requests of one operation (or of all, under "*"): add
latency, reject, stay silent, answer twice or late, drop the connection, or throttle. Faults are
set from the CLI (`--fault SPEC`) or from the Python API (`emulator.faults.set(...)`), from any
thread.

SPEC grammar: `OPERATION:ACTION[=VALUE][,ACTION[=VALUE]...]`, for example
    register_thing:latency=0.5             fixed 500 ms before processing
    *:latency=0.01-0.05                    random 10-50 ms on every operation
    register_thing:reject=429/ThrottlingException/Rate exceeded
    create_certificate_from_csr:never_answer,count=1
    register_thing:late=3                  process now, publish the answer 3 s later
    register_thing:answer_twice
    create_keys_and_certificate:drop_connection
    register_thing:throttle=10/5           token bucket: 10 per second, burst 5
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, replace

from emulator.errors import ConfigError

OPERATIONS = ("create_keys_and_certificate", "create_certificate_from_csr", "register_thing")


@dataclass(frozen=True)
class Fault:
    latency: tuple[float, float] | None = None   # seconds before processing (min, max)
    late: float | None = None                    # seconds between processing and answering
    reject: tuple[int, str, str] | None = None   # statusCode, errorCode, errorMessage
    never_answer: bool = False
    answer_twice: bool = False
    drop_connection: bool = False
    throttle: tuple[float, float] | None = None  # rate per second, burst
    count: int | None = None                     # only the next N requests, then disarmed

    def latency_seconds(self) -> float:
        if not self.latency:
            return 0.0
        low, high = self.latency
        return random.uniform(low, high)


@dataclass(frozen=True)
class Plan:
    """What to do to one request: the fault (if any) and whether the throttle refused it."""

    fault: Fault | None
    throttled: bool = False


class _TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


class Faults:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._buckets: dict[str, _TokenBucket] = {}

    def set(self, operation: str, fault: Fault) -> None:
        if operation != "*" and operation not in OPERATIONS:
            raise ConfigError(f"unknown operation {operation!r}; use one of "
                              f"{', '.join(OPERATIONS)} or *")
        with self._lock:
            self._faults[operation] = fault
            self._buckets.pop(operation, None)
            if fault.throttle:
                self._buckets[operation] = _TokenBucket(*fault.throttle)

    def clear(self, operation: str | None = None) -> None:
        with self._lock:
            if operation is None:
                self._faults.clear()
                self._buckets.clear()
            else:
                self._faults.pop(operation, None)
                self._buckets.pop(operation, None)

    def plan(self, operation: str) -> Plan:
        with self._lock:
            key = operation if operation in self._faults else "*"
            fault = self._faults.get(key)
            if fault is None:
                return Plan(None)
            if fault.count is not None:
                if fault.count <= 1:
                    del self._faults[key]
                else:
                    self._faults[key] = replace(fault, count=fault.count - 1)
            bucket = self._buckets.get(key)
            throttled = bucket is not None and not bucket.take()
            return Plan(fault, throttled)


def parse_spec(spec: str) -> tuple[str, Fault]:
    """Parse one `--fault` value; raise ConfigError saying what is wrong."""
    operation, sep, actions = spec.partition(":")
    if not sep or not actions:
        raise ConfigError(f"fault {spec!r}: expected OPERATION:ACTION[=VALUE],...")
    if operation != "*" and operation not in OPERATIONS:
        raise ConfigError(f"fault {spec!r}: unknown operation {operation!r}")
    fields: dict[str, object] = {}
    for action in actions.split(","):
        name, _, value = action.partition("=")
        name = name.strip()
        try:
            if name == "latency":
                low, _, high = value.partition("-")
                fields["latency"] = (float(low), float(high or low))
            elif name == "late":
                fields["late"] = float(value)
            elif name == "reject":
                status, _, rest = value.partition("/")
                code, _, message = rest.partition("/")
                fields["reject"] = (int(status), code or "InjectedFault",
                                    message or "rejected by an injected fault")
            elif name in ("never_answer", "answer_twice", "drop_connection"):
                fields[name] = True
            elif name == "throttle":
                rate, _, burst = value.partition("/")
                fields["throttle"] = (float(rate), float(burst or rate))
            elif name == "count":
                fields["count"] = int(value)
            else:
                raise ConfigError(f"fault {spec!r}: unknown action {name!r}")
        except ValueError as exc:
            raise ConfigError(f"fault {spec!r}: bad value for {name}: {value!r}") from exc
    return operation, Fault(**fields)  # type: ignore[arg-type]
