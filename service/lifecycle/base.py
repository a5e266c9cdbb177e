"""What every lifecycle operation works with: the settings, the store and AWS IoT's control plane.

One `Lifecycle` per app (or per CLI run). It owns nothing that lives across a fork: the store and
the control plane are asked for when an operation needs them (each is this process's).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from service import metrics
from service.aws import ControlPlane
from service.config import Settings
from service.errors import NotFound, ServiceError
from service.store import Store
from service.store.lifecycle import LifecycleEvent, LifecycleQueries, Retirement

log = logging.getLogger("service.lifecycle")

NO_STORE = (
    "This service runs without a store (PROVISIONER_DATABASE_URL=off): lifecycle actions are "
    "recorded in its audit trail and orphans in its tables, so they are not available."
)


class Lifecycle:
    def __init__(
        self,
        settings: Settings,
        *,
        store: Callable[[], Store],
        control: Callable[[], ControlPlane],
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.settings = settings
        self._store = store
        self._control = control
        self._clock = clock or (lambda: datetime.now(UTC))

    def now(self) -> datetime:
        return self._clock()

    def store(self) -> Store:
        store = self._store()
        if store.off:
            raise NotFound(NO_STORE)
        return store

    def records(self) -> LifecycleQueries:
        return LifecycleQueries(self.store().engine)

    def control(self) -> ControlPlane:
        """This process's control plane, or ControlPlaneUnavailable saying why not."""
        return self._control()

    def event(self, act: Act, outcome: str, detail: dict[str, Any] | None = None) -> None:
        """One row of the lifecycle audit trail, counted and logged."""
        metrics.lifecycle_actions.labels(act.action, outcome).inc()
        log.info(
            "lifecycle: %s %s by %s: thing %s, certificate %s",
            act.action,
            outcome,
            act.actor or "-",
            act.thing_name or "-",
            (act.certificate_id or "-")[:12],
        )
        self.records().add_event(
            LifecycleEvent(
                at=self.now(),
                action=act.action,
                outcome=outcome,
                actor=act.actor,
                thing_name=act.thing_name,
                certificate_id=act.certificate_id,
                detail=detail,
                request_id=act.request_id,
            )
        )

    def failed(self, act: Act, error: ServiceError, detail: dict[str, Any]) -> None:
        """The row of an action that `error` stopped (its detail cut to 300 characters)."""
        self.event(act, "failed", {**detail, "error": error.detail[:300]})


@dataclass(frozen=True)
class Act:
    """One lifecycle action as its audit rows name it: what, asked by whom, on which thing and
    certificate, in which request."""

    action: str
    actor: str | None
    thing_name: str | None = None
    certificate_id: str | None = None
    request_id: str | None = None

    def retirement(
        self, certificate_id: str, kind: str, reason: str, at: datetime, due: datetime
    ) -> Retirement:
        """A certificate this action takes out of AWS IoT, recorded for the sweep."""
        return Retirement(
            certificate_id=certificate_id,
            kind=kind,
            reason=reason,
            recorded_at=at,
            due_at=due,
            thing_name=self.thing_name,
            request_id=self.request_id,
        )
