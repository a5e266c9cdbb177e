"""After birth: what the service does to the identities it issued, through AWS IoT's control plane
(service.aws) and its store (service.store.lifecycle). docs/lifecycle.md.

    lifecycle = Lifecycle(settings, store=..., control=...)       service.lifecycle.base
    devices.view(lifecycle, thing) / devices.decommission(...)     the device view; decommission
    certificates.change_status(lifecycle, id, "revoke" | "suspend" | "reactivate", ...)
    rotation.rotate(lifecycle, thing, csr_pem, grace=..., replacing=...)   EST simplereenroll's path
    orphans.OrphanRecorder / orphans.sweep(...)                    no orphans
    reconcile.reconcile(lifecycle, since)                          the audit trail against AWS

`for_app(settings, store)` makes the pieces an app (or a CLI run) needs: the lifecycle and this
process's control plane, made on first use.
"""

from __future__ import annotations

from collections.abc import Callable

from service.aws import ControlPlaneHolder, target_of
from service.config import Settings
from service.lifecycle.base import Lifecycle
from service.lifecycle.orphans import OrphanRecorder
from service.process import PerProcess
from service.store import Store

__all__ = ["Lifecycle", "OrphanRecorder", "for_app"]


def for_app(
    settings: Settings, store: Callable[[], Store]
) -> tuple[Lifecycle, PerProcess[ControlPlaneHolder]]:
    """The lifecycle of an app, and the per-process holder of its control plane (closed with it)."""
    target = target_of(settings)
    control = PerProcess(lambda: ControlPlaneHolder(target))
    return Lifecycle(settings, store=store, control=lambda: control.get().get()), control
