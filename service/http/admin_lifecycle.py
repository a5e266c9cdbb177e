"""The admin API for what happens after birth (admin keys only): devices, certificates, orphans,
reconcile. docs/lifecycle.md; the operations are in openapi.yaml.

GET    /admin/lifecycle                                   the control plane and the sweep: usable?
GET    /admin/devices                                     things in AWS IoT, a page at a time
GET    /admin/devices/<thingName>                         the device view
POST   /admin/devices/<thingName>/decommission            detach, deactivate, delete; enrollment reopened
POST   /admin/devices/<thingName>/rotate                  a new certificate from a CSR; the old retired
POST   /admin/certificates/<certificateId>/revoke         REVOKED (final)
POST   /admin/certificates/<certificateId>/suspend        INACTIVE
POST   /admin/certificates/<certificateId>/reactivate     ACTIVE again
GET    /admin/orphans                                     the certificates recorded to retire
POST   /admin/orphans/sweep                               sweep now
GET    /admin/reconcile                                   the audit trail against AWS IoT
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from flask import Flask, Response, current_app
from marshmallow import RAISE, Schema, fields, validate

from service.aws import ControlPlaneHolder, ControlPlaneUnavailable
from service.http import auth, checked, context
from service.http.admin_schemas import UtcDateTime
from service.http.problems import rules_broken
from service.http.request_log import request_id
from service.http.responses import json_response
from service.http.schemas import CsrField
from service.lifecycle import Lifecycle, certificates, devices, orphans, reconcile, rotation, views
from service.process import PerProcess
from service.store.lifecycle import KINDS, STATES
from service.text import refuse_unusable

blueprint = auth.admin_blueprint("admin_lifecycle", __name__, url_prefix="/admin")

# AWS IoT's rules for a thing name and a certificate id: anything else is looked up nowhere.
THING_NAME = re.compile(r"[a-zA-Z0-9:_-]{1,128}")
CERTIFICATE_ID = re.compile(r"[0-9a-f]{64}")


class _DevicesQuery(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=50, validate=validate.Range(1, 250))
    next = fields.String(load_default=None, validate=validate.Length(1, 4096))


class _RotateBody(Schema):
    class Meta:
        unknown = RAISE

    csr = CsrField(required=True)
    grace_seconds = fields.Integer(
        data_key="graceSeconds",
        load_default=None,
        allow_none=True,
        strict=True,
        validate=validate.Range(0, 90 * 86400),
    )
    replacing = fields.String(
        load_default=None, allow_none=True, validate=validate.Regexp(r"^[0-9a-f]{64}\Z")
    )


class _OrphansQuery(Schema):
    class Meta:
        unknown = RAISE

    state = fields.String(load_default=None, validate=validate.OneOf(STATES))
    kind = fields.String(load_default=None, validate=validate.OneOf(KINDS))
    thing_name = fields.String(data_key="thingName", load_default=None, validate=validate.Length(1, 128))
    after = fields.String(load_default="", validate=validate.Regexp(r"^[0-9a-f]{0,64}\Z"))
    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class _ReconcileQuery(Schema):
    class Meta:
        unknown = RAISE

    since = UtcDateTime(load_default=None)


def init_app(app: Flask, lifecycle: Lifecycle, control: PerProcess[ControlPlaneHolder]) -> None:
    app.extensions["lifecycle"] = lifecycle
    app.extensions["control_plane"] = control
    app.register_blueprint(blueprint)


def _lifecycle() -> Lifecycle:
    found: Lifecycle = current_app.extensions["lifecycle"]
    return found


def _actor() -> str:
    return auth.caller().key_id


def _thing(thing_name: str) -> str:
    refuse_unusable({"thingName": thing_name})
    if not THING_NAME.fullmatch(thing_name):
        raise rules_broken({"thingName": ["must be 1-128 characters of [a-zA-Z0-9:_-] (AWS's rule)"]})
    return thing_name


def _certificate(certificate_id: str) -> str:
    refuse_unusable({"certificateId": certificate_id})
    if not CERTIFICATE_ID.fullmatch(certificate_id):
        raise rules_broken({"certificateId": ["must be 64 characters of [0-9a-f]"]})
    return certificate_id


@blueprint.get("/lifecycle")
def status() -> Response:
    settings = context.settings()
    holder: PerProcess[ControlPlaneHolder] = current_app.extensions["control_plane"]
    problem = holder.get().problem()
    body: dict[str, Any] = {
        "controlPlane": {**holder.get().target.describe(), "available": problem is None, "problem": problem},
        "store": not context.store().off,
        "sweep": {
            "intervalSeconds": settings.orphan_sweep_seconds,
            "graceSeconds": settings.orphan_grace_seconds,
        },
        "rotationGraceSeconds": settings.rotation_grace_seconds,
        "retirements": None,
    }
    if not context.store().off:
        counts = _lifecycle().records().counts()
        body["retirements"] = [
            {"kind": kind, "state": state, "count": count} for (kind, state), count in sorted(counts.items())
        ]
    return json_response(body, 200)


@blueprint.get("/devices")
def list_devices() -> Response:
    query = checked.query(_DevicesQuery)
    things, following = _lifecycle().control().list_things(query["next"], query["limit"])
    return json_response({"items": [views.thing_view(t) for t in things], "next": following}, 200)


@blueprint.get("/devices/<thing_name>")
def show_device(thing_name: str) -> Response:
    device = devices.view(_lifecycle(), _thing(thing_name))
    return json_response(views.device_view(device), 200)


@blueprint.post("/devices/<thing_name>/decommission")
def decommission_device(thing_name: str) -> Response:
    done = devices.decommission(_lifecycle(), _thing(thing_name), actor=_actor(), request_id=request_id())
    return json_response(views.decommissioning_view(done), 200)


@blueprint.post("/devices/<thing_name>/rotate")
def rotate_device(thing_name: str) -> Response:
    name = _thing(thing_name)
    body = checked.body(_RotateBody)
    grace = timedelta(seconds=body["grace_seconds"]) if body["grace_seconds"] is not None else None
    done = rotation.rotate(
        _lifecycle(),
        name,
        body["csr"],
        grace=grace,
        replacing=body["replacing"],
        actor=_actor(),
        request_id=request_id(),
    )
    return json_response(views.rotation_view(done), 201)


def _status_change(certificate_id: str, action: str) -> Response:
    change = certificates.change_status(
        _lifecycle(), _certificate(certificate_id), action, actor=_actor(), request_id=request_id()
    )
    return json_response(views.status_change_view(change), 200)


@blueprint.post("/certificates/<certificate_id>/revoke")
def revoke_certificate(certificate_id: str) -> Response:
    return _status_change(certificate_id, "revoke")


@blueprint.post("/certificates/<certificate_id>/suspend")
def suspend_certificate(certificate_id: str) -> Response:
    return _status_change(certificate_id, "suspend")


@blueprint.post("/certificates/<certificate_id>/reactivate")
def reactivate_certificate(certificate_id: str) -> Response:
    return _status_change(certificate_id, "reactivate")


@blueprint.get("/orphans")
def list_orphans() -> Response:
    query = checked.query(_OrphansQuery)
    records = _lifecycle().records()
    items = records.page(
        state=query["state"],
        kind=query["kind"],
        thing_name=query["thing_name"],
        after=query["after"],
        limit=query["limit"],
    )
    following = items[-1].certificate_id if len(items) == query["limit"] else None
    counts = [{"kind": k, "state": s, "count": n} for (k, s), n in sorted(records.counts().items())]
    return json_response(
        {"items": [views.retirement_view(r) for r in items], "next": following, "counts": counts}, 200
    )


@blueprint.post("/orphans/sweep")
def sweep_orphans() -> Response:
    lifecycle = _lifecycle()
    lifecycle.records()  # 404 without a store, before the control plane is asked
    report = orphans.sweep(lifecycle, actor=_actor())
    if report.unavailable is not None:
        raise ControlPlaneUnavailable(report.unavailable)
    return json_response(views.sweep_view(report), 200)


@blueprint.get("/reconcile")
def reconcile_audit() -> Response:
    query = checked.query(_ReconcileQuery)
    result = reconcile.reconcile(_lifecycle(), query["since"])
    return json_response(views.reconciliation_view(result), 200)
