"""Every Prometheus metric of the service, declared once here; code elsewhere only calls them.

Names follow Prometheus' base units (`_seconds`, `_total`); the HTTP histogram has the
OpenTelemetry name and labels. No label ever holds a thing name, a serial, a key id or a raw
path: templates and AWS error codes pass through `Bounded`, which keeps the first values it sees
and folds the rest into "other".

Under gunicorn the values live in files in PROMETHEUS_MULTIPROC_DIR (set by the master before
the workers start, `service.serving.gunicorn_conf`), so that `/metrics` from any worker shows the sum of
all of them; in one process (the dev server, tests) the default registry holds them.
"""

from __future__ import annotations

import os
import re
import threading

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The text format every Prometheus reads (what prometheus_client itself answers by default).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OTHER = "other"


def multiprocess_mode() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


if multiprocess_mode() and values.ValueClass is values.MutexValue:
    # prometheus_client chose its value class when it was first imported, before the variable
    # was set: every worker would count only for itself and /metrics would show one of them.
    raise RuntimeError(
        f"{MULTIPROC_ENV} was set after prometheus_client was imported; set it before (gunicorn_conf)"
    )


class Bounded:
    """Label values from a set that operators bound but callers choose: the first `limit`
    distinct ones (of a safe shape) are kept, later ones become "other". Per process."""

    def __init__(self, limit: int, pattern: str = r"[0-9A-Za-z_.-]{1,64}") -> None:
        self._limit = limit
        self._pattern = re.compile(pattern)
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str | None) -> str:
        if not value or not self._pattern.fullmatch(value):
            return "none" if not value else OTHER
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) < self._limit:
                self._seen.add(value)
                return value
        return OTHER


template_label = Bounded(50)
error_code_label = Bounded(20, r"[A-Za-z][A-Za-z0-9_.-]{0,63}")

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Latencies from a loopback call (~1 ms) to a request deadline (20 s).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0)

# -- HTTP ------------------------------------------------------------------------------------

http_request_duration = Histogram(
    "http_server_request_duration_seconds",
    "Duration of HTTP requests, by route (the URL rule, never the path), method and status code.",
    ["http_route", "http_request_method", "http_response_status_code"],
    buckets=_LATENCY_BUCKETS,
)

# -- provisions and the gate -----------------------------------------------------------------

provisions = Counter(
    "provisioner_provisions_total",
    "POST /provision attempts by template (first 50, then 'other'), flow and outcome "
    "(provisioned, refused, failed, replayed).",
    ["template", "flow", "outcome"],
)
gate_refusals = Counter(
    "provisioner_gate_refusals_total",
    "Provisions refused by the gate (403/409), by the rule that refused them (a refused device "
    "certificate: its problem type, device-unknown-ca, device-revoked, ...).",
    ["rule"],
)
unauthenticated_provisions = Counter(
    "provisioner_unauthenticated_provisions_total",
    "POST /provision answered 401 (no key, or an unknown, revoked or expired one): counted here, "
    "not written to the audit trail a row each, so that a flood without a key costs no store write.",
)
rate_limit_refusals = Counter(
    "provisioner_rate_limit_refusals_total",
    "Requests answered 429 by the service's own limits: an API key's rate (api-key), a device "
    "CA's rate (device-ca) or the account-wide AWS pace (aws-pace).",
    ["limit"],
)
store_transaction_duration = Histogram(
    "provisioner_store_transaction_duration_seconds",
    "Duration of the store's two transactions around a provision, waits for the database's locks "
    "included: checks (rate, Idempotency-Key, enrollment, quota; run again after a PostgreSQL "
    "deadlock) and settlement (the audit record and what the attempt reserved; retried, else "
    "journaled).",
    ["transaction"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0),
)
idempotent_replays = Counter(
    "provisioner_idempotent_replays_total",
    "Provisions answered from a stored result for a repeated Idempotency-Key.",
)

# -- AWS IoT ---------------------------------------------------------------------------------

mqtt_step_duration = Histogram(
    "provisioner_mqtt_step_duration_seconds",
    "Duration of one MQTT step: connect (a connection until it is subscribed), subscribe (a "
    "template's answer topics), create and register (publish to answer), by result.",
    ["step", "result"],
    buckets=_LATENCY_BUCKETS,
)
aws_rejections = Counter(
    "provisioner_aws_rejections_total",
    "Answers on a .../rejected topic, by step and AWS error code (first 20 codes, then 'other').",
    ["step", "error_code"],
)
throttle_retries = Counter(
    "provisioner_aws_throttle_retries_total",
    "Throttled Create* or RegisterThing calls sent again after a backoff, by step.",
    ["step"],
)
throttled_requests = Counter(
    "provisioner_aws_throttled_requests_total",
    "Requests answered 429 because AWS IoT still throttled when the deadline left no room for "
    "another retry, by step.",
    ["step"],
)
pace_wait = Histogram(
    "provisioner_aws_pace_wait_seconds",
    "Time a provision waited for its slot under PROVISIONER_AWS_MAX_RATE.",
    buckets=(0.0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0),
)

# -- the MQTT pool ---------------------------------------------------------------------------

pool_connections = Gauge(
    "provisioner_pool_connections",
    "MQTT connections of the pools of all live workers, by state (ready: connected, "
    "subscribed and clean; busy: serving a flow).",
    ["state"],
    multiprocess_mode="livesum",
)
pool_wait = Histogram(
    "provisioner_pool_wait_seconds",
    "Time a request waited for a free connection.",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0),
)
connection_replacements = Counter(
    "provisioner_connection_replacements_total",
    "Connections closed and replaced by a fresh client, by why they could not serve again.",
    ["reason"],
)
connections_opened = Counter(
    "provisioner_mqtt_connections_opened_total",
    "MQTT connections the pool opened (new clients; paho's own reconnects are counted apart), by why.",
    ["reason"],
)
reconnects = Counter(
    "provisioner_mqtt_reconnects_total",
    "Connections that paho re-established after a loss (not counting first connects).",
)
duplicates_detected = Counter(
    "provisioner_duplicates_detected_total",
    "Connections dirtied by a message nobody waited for (a late, repeated or foreign answer).",
)
answers_before_request = Counter(
    "provisioner_answers_before_request_total",
    "Messages on a flow's answer topics that arrived before its request was written (not its answer).",
)
answers_unproven = Counter(
    "provisioner_answers_unproven_total",
    "Flows refused (502 answer-unproven) because an answer could not be proven to be theirs.",
)

# -- lifecycle: AWS IoT's control plane, orphans and retirements (docs/lifecycle.md) -----------

control_plane_calls = Counter(
    "provisioner_control_plane_calls_total",
    "Calls to AWS IoT's control plane (a page of a listing counts once), by operation and result "
    "(ok, or AWS's error code: first 20, then 'other').",
    ["operation", "result"],
)
control_plane_duration = Histogram(
    "provisioner_control_plane_duration_seconds",
    "Duration of a call to AWS IoT's control plane (botocore's retries included), by operation.",
    ["operation"],
    buckets=_LATENCY_BUCKETS,
)
lifecycle_actions = Counter(
    "provisioner_lifecycle_actions_total",
    "Lifecycle actions (revoke, suspend, reactivate, decommission, rotate, retire), by outcome.",
    ["action", "outcome"],
)
orphans_recorded = Counter(
    "provisioner_orphans_recorded_total",
    "Certificates got from AWS IoT and not handed out, recorded for the sweep, by why "
    "(answer-unproven, register-refused, register-lost, register-not-sent, caller-gone, error).",
    ["reason"],
)
retirements = Counter(
    "provisioner_certificate_retirements_total",
    "Certificates the sweep looked at, by kind (orphan, retirement) and result (retired: "
    "deactivated and deleted; gone: AWS had none; kept: found handed out; failed: tried again later).",
    ["kind", "result"],
)
retirements_pending = Gauge(
    "provisioner_certificate_retirements_pending",
    "Certificates recorded to retire and not retired yet, by kind, as the latest sweep counted them.",
    ["kind"],
    multiprocess_mode="mostrecent",
)


def exposition() -> bytes:
    """The text exposition of every metric: of all workers under gunicorn, else this process's."""
    if multiprocess_mode():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def mark_process_dead(pid: int) -> None:
    """gunicorn's child_exit: drop a dead worker's live gauges (its counters stay summed)."""
    if multiprocess_mode():
        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
