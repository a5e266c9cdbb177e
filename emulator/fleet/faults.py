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
    register_thing:answer_twice            the same answer twice, back to back
    register_thing:answer_twice=0.02-0.05  ...the repeat 20-50 ms later (random in the range)
    create_certificate_from_csr:process_twice       handle the request twice (a QoS 1 redelivery)
    register_thing:process_twice=0.01      ...the second copy arriving 10 ms after the first
    create_keys_and_certificate:drop_connection
    register_thing:throttle=10/5           token bucket: 10 per second, burst 5
    register_thing:late=3,chance=0.05      ...only 5% of the requests, drawn at random

A fault with a `chance` joins a mix: several `--fault` values (or `Faults.add`) for one operation
with chances summing to at most 1, and each request meets at most one of them (a fault-mix
benchmark: 5% late, 10% answered twice, 2% dropped...). A fault without one applies to every
request and replaces whatever the operation had.

From Python, `Fault(answer_twice=True)`, `Fault(answer_twice=0.03)` or
`Fault(answer_twice=(0.02, 0.05))`; the same forms for `process_twice`.

Why these two: an MQTT QoS 1 PUBLISH is delivered "at least once". AWS may send an answer again
(a duplicate the client must ignore, possibly after a later request's answer has gone out), and
a request whose PUBACK was lost is sent again by the client and handled again by AWS.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace

from emulator.errors import ConfigError
from emulator.fleet.operations import NAMES

# False (off), True (no delay), a delay in seconds, or a (min, max) range to draw it from.
Repeat = bool | float | tuple[float, float]


@dataclass(frozen=True)
class Fault:
    latency: tuple[float, float] | None = None  # seconds before processing (min, max)
    late: float | None = None  # seconds between processing and answering
    reject: tuple[int, str, str] | None = None  # statusCode, errorCode, errorMessage
    never_answer: bool = False
    answer_twice: Repeat = False  # the answer again, after this delay
    process_twice: Repeat = False  # a second copy of the request, this much later
    drop_connection: bool = False
    throttle: tuple[float, float] | None = None  # rate per second, burst
    count: int | None = None  # only the next N requests, then disarmed
    chance: float | None = None  # the share of requests it applies to (None: all)

    def __post_init__(self) -> None:
        for name in ("answer_twice", "process_twice"):
            _delay(getattr(self, name), name)  # refuse a bad value when the fault is made
        if self.chance is not None and not 0 < self.chance <= 1:
            raise ConfigError(f"chance: expected a share in (0, 1], got {self.chance!r}")

    def latency_seconds(self) -> float:
        if not self.latency:
            return 0.0
        low, high = self.latency
        return random.uniform(low, high)

    def second_answer_delay(self) -> float | None:
        """Seconds before the repeated answer, or None for no repeat."""
        return _delay(self.answer_twice, "answer_twice")

    def kind(self) -> str:
        """What this fault does, in a word (the first that applies): how `Faults.met` counts it."""
        for name in ("drop_connection", "never_answer", "late", "reject", "process_twice", "answer_twice"):
            if getattr(self, name):
                return name
        return "latency" if self.latency else "throttle" if self.throttle else "none"

    def second_copy_delay(self) -> float | None:
        """Seconds before the second copy of the request is handled, or None for no copy."""
        return _delay(self.process_twice, "process_twice")


def _delay(setting: Repeat, name: str) -> float | None:
    if setting is False:
        return None
    if setting is True:
        return 0.0
    if isinstance(setting, int | float) and setting >= 0:
        return float(setting)
    if (
        isinstance(setting, tuple)
        and len(setting) == 2
        and all(isinstance(x, int | float) and x >= 0 for x in setting)
        and setting[0] <= setting[1]
    ):
        return random.uniform(*setting)
    raise ConfigError(f"{name}: expected True, a delay in seconds or a (min, max) range, got {setting!r}")


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
        # Per operation (or "*"): one fault that applies always, or a mix of faults by chance.
        self._faults: dict[str, list[Fault]] = {}
        self._buckets: dict[str, _TokenBucket] = {}
        # Requests that met a fault, by operation and kind (Fault.kind; "throttled" for the bucket).
        self.met: Counter[tuple[str, str]] = Counter()

    def set(self, operation: str, fault: Fault) -> None:
        """Make `fault` the operation's only fault (a chance, if given, still applies)."""
        _check_operation(operation)
        with self._lock:
            self._faults[operation] = [fault]
            self._buckets.pop(operation, None)
            if fault.throttle:
                self._buckets[operation] = _TokenBucket(*fault.throttle)

    def add(self, operation: str, fault: Fault) -> None:
        """Add `fault` to the operation's mix; every fault in a mix needs a chance, summing to <= 1."""
        _check_operation(operation)
        if fault.chance is None or fault.throttle:
            raise ConfigError("a fault in a mix needs a chance, and throttle cannot be one (use set)")
        with self._lock:
            mix = self._faults.get(operation, [])
            if any(other.chance is None for other in mix):
                raise ConfigError(f"{operation} has a fault that applies always; clear it first")
            total = sum(other.chance or 0 for other in mix) + fault.chance
            if total > 1 + 1e-9:
                raise ConfigError(f"the chances of {operation}'s faults would sum to {total:g}, over 1")
            self._faults[operation] = [*mix, fault]

    def clear(self, operation: str | None = None) -> None:
        with self._lock:
            if operation is None:
                self._faults.clear()
                self._buckets.clear()
                self.met.clear()
            else:
                self._faults.pop(operation, None)
                self._buckets.pop(operation, None)

    def plan(self, operation: str) -> Plan:
        with self._lock:
            key = operation if operation in self._faults else "*"
            mix = self._faults.get(key)
            if not mix:
                return Plan(None)
            bucket = self._buckets.get(key)
            throttled = bucket is not None and not bucket.take()
            if throttled:
                self.met[operation, "throttled"] += 1
            fault = _draw(mix)
            if fault is None:
                return Plan(None, throttled)
            self.met[operation, fault.kind()] += 1
            if fault.count is not None:
                index = mix.index(fault)
                if fault.count <= 1:
                    del mix[index]
                    if not mix:
                        del self._faults[key]
                else:
                    mix[index] = replace(fault, count=fault.count - 1)
            return Plan(fault, throttled)


def _draw(mix: list[Fault]) -> Fault | None:
    """The fault this request meets: each by its chance (None: always), at most one."""
    roll = random.random()
    for fault in mix:
        if fault.chance is None:
            return fault
        if roll < fault.chance:
            return fault
        roll -= fault.chance
    return None


def _check_operation(operation: str) -> None:
    if operation != "*" and operation not in NAMES:
        raise ConfigError(f"unknown operation {operation!r}; use one of {', '.join(NAMES)} or *")


def parse_spec(spec: str) -> tuple[str, Fault]:
    """Parse one `--fault` value; raise ConfigError saying what is wrong."""
    operation, sep, actions = spec.partition(":")
    if not sep or not actions:
        raise ConfigError(f"fault {spec!r}: expected OPERATION:ACTION[=VALUE],...")
    if operation != "*" and operation not in NAMES:
        raise ConfigError(f"fault {spec!r}: unknown operation {operation!r}")
    fields: dict[str, object] = {}
    for action in actions.split(","):
        name, _, value = action.partition("=")
        name = name.strip()
        try:
            if name == "latency":
                fields["latency"] = _range(value)
            elif name == "late":
                fields["late"] = float(value)
            elif name == "reject":
                status, _, rest = value.partition("/")
                code, _, message = rest.partition("/")
                fields["reject"] = (
                    int(status),
                    code or "InjectedFault",
                    message or "rejected by an injected fault",
                )
            elif name in ("answer_twice", "process_twice"):
                fields[name] = _range(value) if value else True
            elif name in ("never_answer", "drop_connection"):
                fields[name] = True
            elif name == "throttle":
                rate, _, burst = value.partition("/")
                fields["throttle"] = (float(rate), float(burst or rate))
            elif name == "count":
                fields["count"] = int(value)
            elif name == "chance":
                fields["chance"] = float(value)
            else:
                raise ConfigError(f"fault {spec!r}: unknown action {name!r}")
        except ValueError as exc:
            raise ConfigError(f"fault {spec!r}: bad value for {name}: {value!r}") from exc
    try:
        return operation, Fault(**fields)  # type: ignore[arg-type]
    except ConfigError as exc:
        raise ConfigError(f"fault {spec!r}: {exc}") from None


def _range(value: str) -> tuple[float, float]:
    """`0.5` or `0.01-0.05`: a fixed number of seconds or a range to draw from."""
    low, _, high = value.partition("-")
    numbers = (float(low), float(high or low))
    if numbers[0] < 0 or numbers[0] > numbers[1]:
        raise ValueError(value)
    return numbers
