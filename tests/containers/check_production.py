"""docker-compose.production.yml for real: three replicas behind nginx on one PostgreSQL, and one
replica killed in the middle of 300 provisions.

What must hold: the migrations ran once; every answer is 201 or retryable with Retry-After (a
5xx, or a 409 for an Idempotency-Key whose first attempt is still held), except the last answer
for a device whose attempt died with the replica: once its hold lapses, 409 already-provisioned
(the service cannot know whether AWS registered it, docs/gate.md); no device gets a second identity
(one RegisterThing at most in the emulator's registry, one certificate, however many retries);
each replica served some; the audit trail has one record per attempt a replica answered; a key's
quota and rate hold across the replicas; the restarted replica is found again by nginx.
Run by tests/containers/run.sh (PYTHONPATH: tests/support and tests/containers).
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

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
    json_lines,
    log,
    logs,
    run,
    wait_for,
)

PORT = int(os.environ.get("CONTAINER_TEST_PORT", "18080"))
BASE = f"http://127.0.0.1:{PORT}"
DEVICES = 300
CALLERS = 12
KILL_AFTER = 120  # devices done when one replica is killed
QUOTA, QUOTA_CALLS = 15, 24
RATE, RATE_CALLS = 10, 16
# The service's deadline: a first attempt lost with its replica holds its Idempotency-Key for
# this + 30 s (docs/gate.md), so the retries of those devices wait that long.
REQUEST_TIMEOUT_SECONDS = 10
SERIAL_PREFIX = "SN-CT-"


@dataclass(frozen=True)
class Attempt:
    device: str
    number: int
    request_id: str
    status: int
    retry_after: str | None
    problem: str | None  # the problem type's last path segment
    rule: str | None
    thing: str | None
    certificate: str | None
    replayed: bool

    @property
    def from_nginx(self) -> bool:
        """nginx's own 502: no replica answered (the one holding the request was killed)."""
        return self.problem == "upstream-unavailable"

    @property
    def retryable(self) -> bool:
        """A 5xx, a 409 for a first attempt still held, or nginx's per-address 429: each with
        Retry-After, to be retried with the same Idempotency-Key."""
        waits = self.problem in ("idempotency-in-progress", "too-many-requests")
        return self.retry_after is not None and (self.status >= 500 or waits)


def send(
    client: httpx.Client, key: str, device: str, number: int, body: dict[str, Any], idem: str
) -> Attempt:
    request_id = f"{idem}-{number}"
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem, "X-Request-Id": request_id}
    response = client.post("/provision", json=body, headers=headers, timeout=60)
    payload = response.json() if response.headers.get("content-type", "").endswith("json") else {}
    problem = payload.get("type", "").rsplit("/", 1)[-1] if response.status_code >= 400 else None
    return Attempt(
        device=device,
        number=number,
        request_id=request_id,
        status=response.status_code,
        retry_after=response.headers.get("Retry-After"),
        problem=problem,
        rule=payload.get("rule"),
        thing=payload.get("thingName") if response.status_code == 201 else None,
        certificate=payload.get("certificateId") if response.status_code == 201 else None,
        replayed=response.headers.get("Idempotent-Replayed") == "true",
    )


def provision_until_done(
    client: httpx.Client, key: str, serial: str, idem: str, deadline: float
) -> list[Attempt]:
    """One device, retried with the same Idempotency-Key and body while the answer says so."""
    _, csr = make_csr(serial)
    body = {"templateName": "demo", "parameters": {"SerialNumber": serial}, "csr": csr}
    attempts: list[Attempt] = []
    while True:
        attempt = send(client, key, serial, len(attempts) + 1, body, idem)
        attempts.append(attempt)
        if not attempt.retryable or time.monotonic() > deadline:
            return attempts
        time.sleep(min(float(attempt.retry_after or 1), 5))


def admin(client: httpx.Client, admin_key: str, method: str, path: str, **kwargs: Any) -> Any:
    response = client.request(
        method, path, headers={"Authorization": f"Bearer {admin_key}"}, timeout=30, **kwargs
    )
    expect(response.status_code < 300, f"{method} {path} -> {response.status_code} {response.text[:300]}")
    return response.json()


def new_key(client: httpx.Client, admin_key: str, **spec: Any) -> tuple[str, str]:
    created = admin(client, admin_key, "POST", "/admin/keys", json={"templates": ["demo"], **spec})
    return created["apiKey"], created["key"]["keyId"]


def registrations(client: httpx.Client, admin_key: str, key_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    before: int | None = None
    while True:
        params: dict[str, Any] = {"keyId": key_id, "limit": 1000}
        if before is not None:
            params["before"] = before
        page = admin(client, admin_key, "GET", "/admin/registrations", params=params)
        items += page["items"]
        if page["next"] is None:
            return items
        before = page["next"]


def served_by(stack: Compose, prefix: str) -> dict[str, str]:
    """request id -> the replica whose access log has it (the service's JSON logs)."""
    found = {}
    for container in stack.containers("service"):
        for line in json_lines(logs(container)):
            request_id = str(line.get("request_id", ""))
            if line.get("logger") == "service.access" and request_id.startswith(prefix):
                found[request_id] = container
    return found


def in_parallel(jobs: list[Callable[[], list[Attempt]]], callers: int) -> list[Attempt]:
    with ThreadPoolExecutor(callers) as pool:
        return [a for attempts in pool.map(lambda job: job(), jobs) for a in attempts]


class Killer(threading.Thread):
    """Kills one replica once `KILL_AFTER` devices are done, then starts it again."""

    def __init__(self, stack: Compose, done: Callable[[], int]) -> None:
        super().__init__(daemon=True)
        self.stack, self.done = stack, done
        self.victim = ""
        self.addresses: tuple[str, str] = ("", "")
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            wait_for(f"{KILL_AFTER} devices done", lambda: self.done() >= KILL_AFTER, 300, every=0.05)
            self.victim = self.stack.containers("service")[1]
            before = address(self.victim)
            run(["docker", "kill", self.victim], timeout=60)
            log(f"killed {self.victim} ({before}) with {self.done()} of {DEVICES} devices done")
            time.sleep(3)
            run(["docker", "start", self.victim], timeout=60)
            self.addresses = (before, address(self.victim))
            log(f"started {self.victim} again at {self.addresses[1]}")
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            self.error = error


def check_load(stack: Compose, client: httpx.Client, admin_key: str) -> tuple[str, Killer]:
    key, key_id = new_key(client, admin_key, name="ci-line", serverKeys=False)
    finished: list[int] = [0]
    lock = threading.Lock()

    def device(i: int) -> Callable[[], list[Attempt]]:
        def job() -> list[Attempt]:
            attempts = provision_until_done(
                client, key, f"{SERIAL_PREFIX}{i:06d}", f"ct-{i:06d}", time.monotonic() + 180
            )
            with lock:
                finished[0] += 1
            return attempts

        return job

    killer = Killer(stack, lambda: finished[0])
    killer.start()
    started = time.monotonic()
    attempts = in_parallel([device(i) for i in range(DEVICES)], CALLERS)
    elapsed = time.monotonic() - started
    killer.join(120)
    if killer.error is not None:
        raise CheckFailed(f"killing a replica failed: {killer.error}")
    expect(bool(killer.victim), "no replica was killed")

    statuses = Counter(
        f"{a.status} {a.problem or ('replayed' if a.replayed else 'provisioned')}" for a in attempts
    )
    log(f"{DEVICES} devices, {len(attempts)} attempts in {elapsed:.1f} s: {dict(sorted(statuses.items()))}")
    # Every answer is 201 or retryable with Retry-After, but one: a device whose attempt died
    # with the replica may end in 409 already-provisioned once its hold lapsed (the service
    # cannot know whether AWS registered it, so it never mints again: docs/gate.md).
    lost_devices = {a.device for a in attempts if a.from_nginx}
    last = {a.device: a for a in attempts}
    expect(len(last) == DEVICES, f"{DEVICES - len(last)} devices never answered")
    settled = {d for d, a in last.items() if a.status == 409 and a.problem == "already-provisioned"}
    bad = [a for a in attempts if a.status != 201 and not a.retryable and a is not last.get(a.device)]
    bad += [a for d, a in last.items() if a.status != 201 and not (d in settled and d in lost_devices)]
    expect(not bad, f"answers neither 201 nor retryable with Retry-After: {bad[:5]}")
    log(
        f"devices: {DEVICES - len(settled)} ended 201; {len(lost_devices)} had an attempt lost with the "
        f"killed replica, {len(settled)} of them end 409 already-provisioned (maybe provisioned, never twice)"
    )

    # One identity per Idempotency-Key: every 201 of a device names the same thing and certificate...
    identities: dict[str, set[tuple[str | None, str | None]]] = {}
    for a in attempts:
        if a.status == 201:
            identities.setdefault(a.device, set()).add((a.thing, a.certificate))
    two = {d: ids for d, ids in identities.items() if len(ids) != 1}
    expect(not two, f"devices answered with more than one identity: {two}")
    certificates = {ids.pop()[1] for ids in identities.values()}
    expect(len(certificates) == len(identities), "a certificate was answered for two devices")
    # ...and the emulator registered each thing once at most, once exactly if it was answered 201
    # (a second RegisterThing for a device would be a second identity).
    data_dir = "/var/lib/provisioner/emulator"
    uses = stack(
        "exec", "-T", "emulator", "python", "-m", "emulator", "list", "templates-used", "--data-dir", data_dir
    )
    registered = Counter(
        u["thingName"] for u in json.loads(uses) if u["thingName"].startswith(f"demo-{SERIAL_PREFIX}")
    )
    twice = {thing: n for thing, n in registered.items() if n != 1}
    unregistered = [d for d in identities if registered[f"demo-{d}"] != 1]
    expect(
        not twice and not unregistered,
        f"RegisterThing per thing: {twice}, 201 but not registered: {unregistered}",
    )
    log(
        f"identities: {len(registered)} things, each registered once; {len(certificates)} certificates "
        f"answered, one identity per key; {len(registered) - len(identities)} registered by a lost attempt"
    )

    # The audit trail: one record per attempt a replica answered (nginx's 502s reached none, or
    # one that died before recording); the status recorded is the status answered.
    records = registrations(client, admin_key, key_id)
    by_request = Counter(r["requestId"] for r in records)
    expect(all(n == 1 for n in by_request.values()), "an attempt has more than one audit record")
    answered = {a.request_id: a for a in attempts if not a.from_nginx}
    lost = {a.request_id for a in attempts if a.from_nginx}
    missing = set(answered) - set(by_request)
    extra = set(by_request) - set(answered) - lost
    expect(
        not missing and not extra, f"audit: {len(missing)} answered attempts unrecorded, {len(extra)} unknown"
    )
    wrong = [
        r
        for r in records
        if r["requestId"] in answered and r["httpStatus"] != answered[r["requestId"]].status
    ]
    expect(not wrong, f"audit records with another status than answered: {wrong[:3]}")
    outcomes = Counter(r["outcome"] for r in records)
    log(
        f"audit: {len(records)} records for {len(answered)} answered attempts, one each {dict(outcomes)}; "
        f"{len(lost)} attempts lost with the killed replica ({len(set(by_request) & lost)} of them recorded)"
    )

    # Each replica served some: the service's access log names the request id.
    where = served_by(stack, "ct-")
    per_replica = Counter(where[a.request_id] for a in answered.values() if a.request_id in where)
    log(f"attempts per replica: {dict(sorted(per_replica.items()))}")
    expect(
        len(per_replica) == 3 and min(per_replica.values()) > 0, f"not every replica served: {per_replica}"
    )
    expect(len(where) >= len(answered), f"{len(answered) - len(where)} answered attempts in no replica's log")
    return key, killer


def check_quota_and_rate(stack: Compose, client: httpx.Client, admin_key: str, victim: str) -> None:
    def one_call(key: str, prefix: str, i: int) -> Callable[[], list[Attempt]]:
        def job() -> list[Attempt]:
            _, csr = make_csr(f"{prefix}{i}")
            body = {"templateName": "demo", "parameters": {"SerialNumber": f"SN-{prefix}{i:04d}"}, "csr": csr}
            return [send(client, key, body["parameters"]["SerialNumber"], 1, body, f"{prefix}{i:04d}")]

        return job

    key, _ = new_key(client, admin_key, name="ci-quota", maxProvisions=QUOTA)
    quota = in_parallel([one_call(key, "cq-", i) for i in range(QUOTA_CALLS)], 6)
    seen = Counter(f"{a.status} {a.rule or ''}".strip() for a in quota)
    where = served_by(stack, "cq-")
    replicas = Counter(where.get(a.request_id, "?") for a in quota if a.status == 201)
    log(
        f"quota {QUOTA}, {QUOTA_CALLS} calls: {dict(seen)}; 201s per replica {dict(sorted(replicas.items()))}"
    )
    expect(seen == Counter({"201": QUOTA, "403 quota-exhausted": QUOTA_CALLS - QUOTA}), f"quota: {seen}")
    expect(len(replicas) >= 2, "the quota's 201s came from one replica only")

    # A fixed one-minute window (docs/gate.md): start where the calls fit in one window.
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)
    key, _ = new_key(client, admin_key, name="ci-rate", ratePerMinute=RATE)
    rate = in_parallel([one_call(key, "cr-", i) for i in range(RATE_CALLS)], 4)
    seen = Counter(str(a.status) for a in rate)
    limited = [a for a in rate if a.status == 429]
    where = served_by(stack, "cr-")
    replicas = Counter(where.get(a.request_id, "?") for a in rate)
    log(f"rate {RATE}/min, {RATE_CALLS} calls: {dict(seen)}; per replica {dict(sorted(replicas.items()))}")
    expect(seen == Counter({"201": RATE, "429": RATE_CALLS - RATE}), f"rate: {seen}")
    expect(all(a.retry_after and a.problem == "rate-limited" for a in limited), "a 429 without Retry-After")
    expect(len(replicas) >= 2, "the rate's calls came from one replica only")
    later = served_by(stack, "cq-") | where
    restarted = sum(1 for container in later.values() if container == victim)
    log(f"the restarted replica {victim} served {restarted} of the {len(later)} later calls (found again)")
    expect(restarted > 0, "nginx never sent a request to the restarted replica")


def main() -> int:
    admin_key, password = secrets.token_hex(24), secrets.token_hex(24)
    stack = Compose(
        "docker-compose.production.yml",
        "iotprov-ci",
        {
            "PROVISIONER_API_KEYS": admin_key,
            "POSTGRES_PASSWORD": password,
            "PROVISIONER_HTTP_PORT": str(PORT),
            "PROVISIONER_REQUEST_TIMEOUT_SECONDS": str(REQUEST_TIMEOUT_SECONDS),
            # AWS's round trip (20 ms): requests are in flight when the replica is killed.
            "EMULATOR_SEND_DELAY": "0.02",
        },
    )
    started = time.monotonic()
    try:
        stack("down", "-v", "--remove-orphans", timeout=120)
        # No working default: without the secrets (and with no .env file) compose refuses to start.
        bare = {k: v for k, v in os.environ.items() if k not in stack.env}
        refused = run(
            [*stack.command, "-f", stack.file, "--env-file", os.devnull, "config"],
            timeout=60,
            env=bare,
            check=False,
        )
        expect(
            refused == "",
            "compose accepted the production file without PROVISIONER_API_KEYS/POSTGRES_PASSWORD",
        )
        t0 = time.monotonic()
        stack("build", timeout=900)
        log(f"build: {time.monotonic() - t0:.0f} s, {IMAGE} {image_size_mb():.0f} MB")
        t0 = time.monotonic()
        stack("up", "-d", timeout=300)
        replicas = stack.containers("service")
        expect(len(replicas) == 3, f"replicas: {replicas}")
        wait_for("3 healthy replicas", lambda: all(health(c) == "healthy" for c in replicas), 120)
        wait_for("/readyz through nginx", lambda: answers(BASE + "/readyz"), 60)
        log(f"up: 3 replicas healthy and /readyz through nginx in {time.monotonic() - t0:.0f} s: {replicas}")
        migrated = [
            (c, line["message"])
            for c in replicas
            for line in json_lines(logs(c))
            if "schema migrated" in str(line.get("message", ""))
        ]
        log(f"migrations: {migrated}")
        expect(
            len(migrated) == 1, f"the schema was migrated {len(migrated)} times by {len(replicas)} replicas"
        )

        # One client for every caller thread (httpx's is thread-safe): a client per call would
        # spend more CPU loading CA certificates than the service spends provisioning.
        limits = httpx.Limits(max_connections=2 * CALLERS, max_keepalive_connections=2 * CALLERS)
        with httpx.Client(base_url=BASE, limits=limits) as client:
            _, killer = check_load(stack, client, admin_key)
            wait_for(f"{killer.victim} healthy again", lambda: health(killer.victim) == "healthy", 120)
            check_quota_and_rate(stack, client, admin_key, killer.victim)
        nginx_errors = [
            line
            for line in stack("logs", "--no-color", "nginx", timeout=60).splitlines()
            if "[error]" in line
        ]
        log(f"nginx's error log (compose logs): {len(nginx_errors)} lines, e.g. {nginx_errors[-1:]}")
        log(f"production compose: all checks held in {time.monotonic() - started:.0f} s")
        return 0
    except CheckFailed as failure:
        print(f"FAIL: {failure}", file=sys.stderr)
        print(stack("logs", "--no-color", "--tail", "30", timeout=60, check=False), file=sys.stderr)
        return 1
    finally:
        if os.environ.get("CONTAINER_TEST_KEEP") != "1":  # 1: leave the stack up to look into
            stack("down", "-v", "--remove-orphans", timeout=120, check=False)


if __name__ == "__main__":
    sys.exit(main())
