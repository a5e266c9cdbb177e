"""Reconcile: the audit trail against AWS IoT, the differences both ways.

From the audit trail's side, for each certificate the service handed out (a 201, a rotation):
- `missing-in-aws`: AWS has no such certificate, and the service did not delete it;
- `status-differs`: AWS has it in another status than the service's last action left it
  (ACTIVE after a provision or a reactivate, REVOKED after a revoke, INACTIVE after a suspend);
- `thing-missing-in-aws`: the thing it was provisioned for is gone, and not decommissioned here.

From AWS's side, for each certificate AWS holds that was created since the audit trail begins
(`since`, else its oldest record):
- `unknown-to-audit`: neither handed out nor recorded by the service. AWS records no link from
  a certificate to the claim or the call that made it, so every certificate of the account made
  in that time counts, whoever made it (the claim certificate itself is left out); the things it
  is attached to are named. A PENDING_ACTIVATION one was never registered: AWS deletes it when
  its ownership token expires (an hour);
- `retirement-pending`: one the service recorded to retire (an orphan, a rotated or decommissioned
  certificate) that the sweep has not taken out yet.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.lifecycle.base import Lifecycle

KINDS = ("missing-in-aws", "status-differs", "thing-missing-in-aws", "unknown-to-audit", "retirement-pending")
EXPECTED = {"revoke": "REVOKED", "suspend": "INACTIVE", "reactivate": "ACTIVE"}
# Certificates whose things are looked up, at most (one ListPrincipalThings call each).
MAX_THING_LOOKUPS = 1000


@dataclass(frozen=True)
class Difference:
    kind: str
    certificate_id: str | None
    thing_name: str | None
    aws_status: str | None
    expected_status: str | None
    at: datetime | None  # handed out (audit side) or created (AWS side)
    detail: str


@dataclass(frozen=True)
class Reconciliation:
    since: datetime | None
    certificates_in_aws: int
    issued_here: int
    differences: list[Difference]


def reconcile(lifecycle: Lifecycle, since: datetime | None = None) -> Reconciliation:
    records = lifecycle.records()
    control = lifecycle.control()
    if since is None:
        since = records.oldest_record()
    in_aws = {c.certificate_id: c for c in control.all_certificates()}
    issued = {i.certificate_id: i for i in records.issued(None)}  # the newest record of each wins
    retirements = records.all()
    status_set_here = records.status_events(None)
    decommissioned = records.decommissioned_things()
    differences: list[Difference] = []

    for certificate_id, issue in issued.items():
        retirement = retirements.get(certificate_id)
        if since is not None and issue.at < since:
            continue
        found = in_aws.get(certificate_id)
        if found is None:
            if retirement is None or retirement.state == "pending":
                differences.append(
                    Difference(
                        "missing-in-aws",
                        certificate_id,
                        issue.thing_name,
                        None,
                        "ACTIVE",
                        issue.at,
                        "handed out here; AWS IoT has no such certificate and the service did not delete it",
                    )
                )
            continue
        if retirement is not None:
            continue  # being retired (listed below) or retired: its status is the sweep's
        action = status_set_here.get(certificate_id)
        expected = EXPECTED[action[0]] if action else "ACTIVE"
        if found.status != expected:
            why = (
                f"the service's last action was {action[0]} at {action[1].isoformat()}"
                if action
                else "issued ACTIVE"
            )
            differences.append(
                Difference(
                    "status-differs",
                    certificate_id,
                    issue.thing_name,
                    found.status,
                    expected,
                    issue.at,
                    f"{why}; AWS IoT says {found.status}: changed outside the service",
                )
            )

    things_issued = {
        i.thing_name for i in issued.values() if i.thing_name and (since is None or i.at >= since)
    }
    if things_issued - decommissioned:
        things_in_aws = set(control.all_thing_names())
        for thing_name in sorted(things_issued - decommissioned - things_in_aws):
            differences.append(
                Difference(
                    "thing-missing-in-aws",
                    None,
                    thing_name,
                    None,
                    None,
                    None,
                    "provisioned here; AWS IoT has no such thing and the service did not decommission it",
                )
            )

    claim = _claim_certificate_id(lifecycle)
    lookups = 0
    for certificate in in_aws.values():
        certificate_id = certificate.certificate_id
        if certificate_id in issued or certificate_id == claim:
            continue
        retirement = retirements.get(certificate_id)
        if retirement is not None:
            if retirement.state == "pending":
                differences.append(
                    Difference(
                        "retirement-pending",
                        certificate_id,
                        retirement.thing_name,
                        certificate.status,
                        None,
                        certificate.creation_date,
                        f"{retirement.kind} ({retirement.reason}) to be retired from "
                        f"{retirement.due_at.isoformat()}; attempts {retirement.attempts}"
                        + (f", last error: {retirement.last_error}" if retirement.last_error else ""),
                    )
                )
            continue
        created = certificate.creation_date
        if since is not None and created is not None and created < since:
            continue
        things: list[str] = []
        if lookups < MAX_THING_LOOKUPS:
            things = control.principal_things(certificate.certificate_arn)
            lookups += 1
        attached = f"attached to {', '.join(things)}" if things else "attached to no thing"
        pending = (
            "; AWS deletes it when its ownership token expires"
            if certificate.status == "PENDING_ACTIVATION"
            else ""
        )
        differences.append(
            Difference(
                "unknown-to-audit",
                certificate_id,
                things[0] if things else None,
                certificate.status,
                None,
                created,
                f"in AWS IoT ({attached}), neither handed out nor recorded by the service{pending}",
            )
        )
    differences.sort(
        key=lambda d: (KINDS.index(d.kind), d.at.isoformat() if d.at else "", d.certificate_id or "")
    )
    return Reconciliation(since, len(in_aws), len(issued), differences)


def _claim_certificate_id(lifecycle: Lifecycle) -> str | None:
    """AWS IoT's id of a certificate is the SHA-256 of its DER: the claim's is left out."""
    path = lifecycle.settings.claim_cert
    if path is None:
        return None
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError):
        return None
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()
