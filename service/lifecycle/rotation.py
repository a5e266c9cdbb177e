"""Rotation: a new certificate for the same thing from the device's CSR (the path EST's
simplereenroll takes), the old one retired after a grace period or at once.

    rotate(lifecycle, "demo-SN-1", csr_pem, grace=timedelta(hours=1)) -> Rotation

1. The thing must exist; the certificate being replaced (`replacing`, else every certificate
   attached to the thing) must be attached to it.
2. CreateCertificateFromCsr with setAsActive (the control plane's: no ownership token, no
   template); the certificate must carry the CSR's public key, as a provision's must.
3. AttachThingPrincipal, and every policy the replaced certificates had (AttachPolicy): the new
   certificate may do what the old one did.
4. The replaced certificates are scheduled for retirement (detach, deactivate, delete) at now +
   grace; with no grace they are retired before this returns, and a device still connected with
   one is disconnected by AWS.

A failure after step 2 leaves the new certificate recorded as an orphan (the sweep deletes it);
nothing is retired unless the new certificate is attached. Each rotation is one lifecycle event.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.aws import certificate_id_of
from service.errors import InvalidInput, NotFound, ServiceError, UpstreamInvalid
from service.lifecycle.base import Act, Lifecycle
from service.lifecycle.orphans import retire


@dataclass(frozen=True)
class Rotation:
    thing_name: str
    certificate_id: str
    certificate_arn: str
    certificate_pem: str
    policies: list[str]
    # (certificate id, when it is retired); retired already when the grace was zero
    retiring: list[tuple[str, datetime]]
    retired_now: list[str]

    def __repr__(self) -> str:
        return f"Rotation(thing_name={self.thing_name!r}, certificate_id={self.certificate_id!r})"


def rotate(
    lifecycle: Lifecycle,
    thing_name: str,
    csr_pem: str,
    *,
    grace: timedelta | None = None,
    replacing: str | None = None,
    actor: str | None,
    request_id: str | None = None,
) -> Rotation:
    """A new certificate for `thing_name` from `csr_pem` (one PEM CSR; the caller checked its key
    type and size as for a provision); `grace` None takes PROVISIONER_ROTATION_GRACE_SECONDS."""
    csr = _parsed(csr_pem)
    if grace is None:
        grace = timedelta(seconds=lifecycle.settings.rotation_grace_seconds)
    if grace < timedelta(0):
        raise InvalidInput(
            "the grace period cannot be negative", errors={"graceSeconds": ["must be >= 0"]}, status=422
        )
    records = lifecycle.records()
    control = lifecycle.control()
    if control.describe_thing(thing_name) is None:
        raise NotFound(f"AWS IoT has no thing named {thing_name!r}")
    attached = control.thing_principals(thing_name)
    if replacing is not None:
        old = [arn for arn in attached if certificate_id_of(arn) == replacing]
        if not old:
            raise NotFound(f"certificate {replacing} is not attached to thing {thing_name!r}")
    else:
        old = attached
    issued = control.create_certificate_from_csr(csr_pem)
    act = Act("rotate", actor, thing_name=thing_name, request_id=request_id)
    try:
        _check_key(issued.certificate_pem, csr)
        control.attach_thing_principal(thing_name, issued.certificate_arn)
        policies = sorted({name for arn in old for name in control.attached_policies(arn)})
        for name in policies:
            control.attach_policy(name, issued.certificate_arn)
    except ServiceError as error:
        # The new certificate reached nobody: the sweep takes it out of AWS.
        now = lifecycle.now()
        records.schedule([act.retirement(issued.certificate_id, "orphan", "rotation-failed", now, now)])
        lifecycle.failed(act, error, {"newCertificateId": issued.certificate_id})
        raise
    now = lifecycle.now()
    due = now + grace
    retirements = [act.retirement(certificate_id_of(arn), "retirement", "rotated", now, due) for arn in old]
    records.schedule(retirements)
    for retirement in retirements:
        records.make_due(retirement.certificate_id, due)  # one scheduled earlier: not later than this
    lifecycle.event(
        replace(act, certificate_id=issued.certificate_id),
        "done",
        {
            "replaces": [r.certificate_id for r in retirements],
            "retireAt": due.isoformat(),
            "policies": policies,
        },
    )
    retired_now = []
    if grace == timedelta(0):
        for retirement in retirements:
            done = retire(lifecycle, retirement, actor=actor or "rotate")
            retired_now += done.retired + done.gone
    return Rotation(
        thing_name=thing_name,
        certificate_id=issued.certificate_id,
        certificate_arn=issued.certificate_arn,
        certificate_pem=issued.certificate_pem,
        policies=policies,
        retiring=[(r.certificate_id, due) for r in retirements],
        retired_now=retired_now,
    )


def _parsed(csr_pem: str) -> x509.CertificateSigningRequest:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode("ascii"))
        valid = csr.is_signature_valid
    except (ValueError, UnicodeEncodeError):
        valid = False
    if not valid:
        raise InvalidInput(
            "csr must be one PEM certificate signing request with a valid signature",
            errors={"csr": ["not a PEM CSR with a valid signature"]},
            status=422,
        )
    return csr


def _check_key(certificate_pem: str, csr: x509.CertificateSigningRequest) -> None:
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        matches = certificate.public_key().public_bytes(*spki) == csr.public_key().public_bytes(*spki)
    except ValueError:
        matches = False
    if not matches:
        raise UpstreamInvalid(
            "AWS IoT's CreateCertificateFromCsr answer is not a certificate for the CSR's key"
        )
