"""No orphans: every certificate the service got from AWS IoT and did not hand out is recorded and
swept (deactivated and deleted through the control plane), as are certificates a rotation or a
decommission retires.

Why it matters: AWS deletes a certificate from Create* whose ownership token expires unredeemed
(an hour); one that RegisterThing activated and attached, whose answer was then lost, stays
ACTIVE forever, a working identity nobody holds.

- `OrphanRecorder.record` (the flow's `UnsentCertificates`): one row per certificate in
  `certificate_retirements`, due after PROVISIONER_ORPHAN_GRACE_SECONDS; a store that cannot take
  it now gets it later (kept in memory, bounded, written by the next sweep).
- `sweep`: every due row, leased to this sweeper, is retired: detached from its things, set
  INACTIVE if ACTIVE, deleted (with its policies). An orphan the audit trail shows handed out is
  never touched (`kept`); one AWS no longer has is `gone`. A failure is retried later, backing off
  from the sweep interval to an hour.
- `Sweeper`: a thread per worker running `sweep` every PROVISIONER_ORPHAN_SWEEP_SECONDS (jittered),
  started with the worker's provisioner and stopped with it.
"""

from __future__ import annotations

import collections
import logging
import random
import threading
from dataclasses import dataclass, field
from datetime import timedelta

from service import metrics
from service.aws import Certificate, ControlPlaneUnavailable
from service.errors import ServiceError
from service.lifecycle.base import Act, Lifecycle
from service.provisioning.unsent import UnsentCertificate
from service.store.lifecycle import Retirement

log = logging.getLogger("service.lifecycle")

LEASE = timedelta(minutes=5)
MAX_BACKOFF = timedelta(hours=1)
BACKLOG = 10_000
BATCH = 200


@dataclass
class SweepReport:
    retired: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    unavailable: str | None = None

    @property
    def looked_at(self) -> int:
        return len(self.retired) + len(self.gone) + len(self.kept) + len(self.failed)

    def merge(self, other: SweepReport) -> None:
        self.retired += other.retired
        self.gone += other.gone
        self.kept += other.kept
        self.failed.update(other.failed)
        self.unavailable = self.unavailable or other.unavailable


class OrphanRecorder:
    """Records the certificates a worker's flows got and did not hand out; owns its sweeper."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        self._lifecycle = lifecycle
        self._backlog: collections.deque[Retirement] = collections.deque(maxlen=BACKLOG)
        self._lock = threading.Lock()
        self._sweeper: Sweeper | None = None

    def record(self, unsent: UnsentCertificate) -> None:
        metrics.orphans_recorded.labels(unsent.reason).inc()
        log.warning(
            "certificate %s was got from AWS IoT and not handed out (%s; request %s, template %s): "
            "recorded for the orphan sweep",
            unsent.certificate_id,
            unsent.reason,
            unsent.request_id or "-",
            unsent.template or "-",
        )
        if self._lifecycle.settings.store_url is None:
            log.warning(
                "certificate %s is not recorded: the service keeps no store (PROVISIONER_DATABASE_URL=off); "
                "delete it in AWS IoT if it is ACTIVE",
                unsent.certificate_id,
            )
            return
        now = self._lifecycle.now()
        retirement = Retirement(
            certificate_id=unsent.certificate_id,
            kind="orphan",
            reason=unsent.reason,
            recorded_at=now,
            due_at=now + timedelta(seconds=self._lifecycle.settings.orphan_grace_seconds),
            thing_name=unsent.thing_name,
            template=unsent.template,
            request_id=unsent.request_id,
        )
        try:
            self._lifecycle.records().schedule([retirement])
        except ServiceError as error:
            # The store is unavailable: kept here until it answers (not past a restart).
            with self._lock:
                self._backlog.append(retirement)
            log.warning(
                "certificate %s kept in memory for the sweep: %s", unsent.certificate_id, error.detail
            )
        except Exception:  # noqa: BLE001 - recording must never fail the request; a bug is logged
            log.exception("certificate %s could not be recorded for the sweep", unsent.certificate_id)

    def flush(self) -> None:
        """Write what the store could not take when it was recorded."""
        with self._lock:
            waiting = list(self._backlog)
            self._backlog.clear()
        if not waiting:
            return
        try:
            self._lifecycle.records().schedule(waiting)
        except ServiceError:
            with self._lock:
                self._backlog.extendleft(reversed(waiting))
            raise

    def start_sweeper(self) -> None:
        seconds = self._lifecycle.settings.orphan_sweep_seconds
        if seconds > 0 and self._sweeper is None:
            self._sweeper = Sweeper(self._lifecycle, self, seconds)
            self._sweeper.start()

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.stop()
            self._sweeper = None


class Sweeper:
    """A daemon thread running `sweep` every `seconds` (jittered) until stopped."""

    def __init__(self, lifecycle: Lifecycle, recorder: OrphanRecorder, seconds: float) -> None:
        self._lifecycle = lifecycle
        self._recorder = recorder
        self._seconds = seconds
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="orphan-sweeper", daemon=True)
        self._last_problem: str | None = None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(self._seconds * random.uniform(0.8, 1.2)):
            try:
                self._recorder.flush()
                report = sweep(self._lifecycle, actor="sweep")
                problem = report.unavailable
            except ServiceError as error:
                problem = error.detail
            except Exception:  # noqa: BLE001 - a bug must not end the sweeps; it is logged
                log.exception("orphan sweep failed unexpectedly")
                continue
            if problem != self._last_problem and problem is not None:
                log.warning("orphan sweep skipped: %s", problem)
            self._last_problem = problem


def sweep(lifecycle: Lifecycle, *, actor: str, limit: int = 10_000) -> SweepReport:
    """Retire every due certificate (at most `limit`), in leased batches."""
    report = SweepReport()
    records = lifecycle.records()
    try:
        lifecycle.control()
    except ControlPlaneUnavailable as error:
        report.unavailable = error.detail
        return report
    while report.looked_at < limit:
        now = lifecycle.now()
        batch = records.claim_due(now, now + LEASE, min(BATCH, limit - report.looked_at))
        if not batch:
            break
        for retirement in batch:
            report.merge(retire(lifecycle, retirement, actor=actor))
    _publish_pending(lifecycle)
    return report


def retire(lifecycle: Lifecycle, retirement: Retirement, *, actor: str) -> SweepReport:
    """Take one certificate out of AWS IoT (detach, deactivate, delete); record how it ended."""
    report = SweepReport()
    records, certificate_id = lifecycle.records(), retirement.certificate_id
    try:
        if retirement.kind == "orphan" and records.handed_out(certificate_id):
            # A caller holds it after all (the audit trail says so): never touched.
            records.finish(certificate_id, "kept", lifecycle.now())
            report.kept.append(certificate_id)
            metrics.retirements.labels(retirement.kind, "kept").inc()
            return report
        control = lifecycle.control()
        certificate = control.describe_certificate(certificate_id)
        if certificate is None:
            records.finish(certificate_id, "gone", lifecycle.now())
            report.gone.append(certificate_id)
            metrics.retirements.labels(retirement.kind, "gone").inc()
            return report
        detached = take_out(lifecycle, certificate)
    except ServiceError as error:
        attempts = retirement.attempts + 1
        backoff = max(5.0, lifecycle.settings.orphan_sweep_seconds) * 2 ** min(attempts - 1, 10)
        now = lifecycle.now()
        due = now + min(timedelta(seconds=backoff), MAX_BACKOFF)
        records.postpone(certificate_id, error.detail, now, due)
        report.failed[certificate_id] = error.detail
        metrics.retirements.labels(retirement.kind, "failed").inc()
        log.warning(
            "certificate %s not retired yet (attempt %d, again after %s): %s",
            certificate_id,
            attempts,
            due.isoformat(timespec="seconds"),
            error.detail,
        )
        return report
    records.finish(certificate_id, "retired", lifecycle.now())
    report.retired.append(certificate_id)
    metrics.retirements.labels(retirement.kind, "retired").inc()
    thing_name = retirement.thing_name or (detached[0] if detached else None)
    lifecycle.event(
        Act("retire", actor, thing_name, certificate_id, retirement.request_id),
        "done",
        {
            "kind": retirement.kind,
            "reason": retirement.reason,
            "status": certificate.status,
            "detachedFrom": detached,
        },
    )
    return report


def take_out(lifecycle: Lifecycle, certificate: Certificate) -> list[str]:
    """Detach a certificate from every thing, deactivate it if ACTIVE, delete it (its policies go
    with it: forceDelete); the things it was detached from. A REVOKED one stays REVOKED until
    deleted; deleting one that is gone already is no error."""
    control = lifecycle.control()
    things = control.principal_things(certificate.certificate_arn)
    for thing_name in things:
        control.detach_thing_principal(thing_name, certificate.certificate_arn)
    if certificate.status == "ACTIVE":
        control.update_certificate(certificate.certificate_id, "INACTIVE")
    control.delete_certificate(certificate.certificate_id)
    return things


def _publish_pending(lifecycle: Lifecycle) -> None:
    counts = lifecycle.records().counts()
    for kind in ("orphan", "retirement"):
        metrics.retirements_pending.labels(kind).set(counts.get((kind, "pending"), 0))
