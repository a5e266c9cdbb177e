"""simplereenroll: a new certificate for the thing whose current certificate the client presented
over mutual TLS (RFC 7030 4.2.2), through the lifecycle's rotation (service.lifecycle.rotation).

    renew(lifecycle, presented, csr, request_id=...) -> Renewal

1. The presented certificate must be one this service handed out (a provision's 201, or an
   earlier rotation: the audit trail says so), and AWS IoT must hold it ACTIVE, attached to one
   thing. Its id is AWS IoT's: the SHA-256 of its DER, so the TLS handshake (which proved the key)
   and AWS IoT's record name the very same certificate.
2. The CSR's subject and subjectAltName must be the presented certificate's (RFC 7030 4.2.2: "MUST
   be identical"); the key may be the same (renew) or a new one (rekey).
3. A certificate a rotation already replaced renews nothing more, with one exception: the CSR of
   that rotation again (its answer was lost) gets the certificate that rotation issued.
4. Otherwise `rotation.rotate(..., replacing=<the presented certificate>)`: the new certificate is
   attached to the thing with the old one's policies, and the old one retires after
   PROVISIONER_ROTATION_GRACE_SECONDS, so a device that never got the answer can still retry.

Each renewal, and each refusal of a certificate this service issued, is a `rotate` lifecycle event
(the actor names the certificate). Two renewals of one certificate at the same moment are not
serialised: both may rotate, and the second's certificate is the one the thing keeps with the
first still attached until an operator retires it (docs/est.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from service.aws import certificate_id_of
from service.callers.devices.certificates import extension
from service.errors import Forbidden, InvalidInput
from service.lifecycle import Lifecycle
from service.lifecycle import rotation as rotations
from service.lifecycle.base import Act

SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
# How far back a thing's lifecycle events are searched for the rotation that replaced a
# certificate: a device rotates rarely, and its last rotations are its newest events.
RECENT_EVENTS = 100


@dataclass(frozen=True)
class Renewal:
    thing_name: str
    certificate_id: str
    certificate_pem: str
    replayed: bool


def certificate_id(certificate: x509.Certificate) -> str:
    """AWS IoT's id of a certificate: the SHA-256 of its DER, in lower-case hex."""
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def renew(
    lifecycle: Lifecycle,
    presented: x509.Certificate,
    csr: x509.CertificateSigningRequest,
    *,
    request_id: str,
) -> Renewal:
    current = certificate_id(presented)
    actor = f"est:{current[:16]}"
    records = lifecycle.records()
    if not records.handed_out(current):
        raise Forbidden(
            f"The certificate presented ({current[:16]}...) was not issued by this service, so it "
            "renews nothing here; a device certificate from its manufacturer enrolls with "
            "simpleenroll.",
            rule="not-issued-here",
        )
    thing_name = None
    try:
        thing_name = _thing_of(lifecycle, current)
        _check_names(presented, csr)
        replaced_by = _replacement(lifecycle, thing_name, current)
        csr_pem = csr.public_bytes(serialization.Encoding.PEM).decode("ascii")
        if replaced_by is not None:
            return _replay(lifecycle, thing_name, current, replaced_by, csr)
        done = rotations.rotate(
            lifecycle, thing_name, csr_pem, replacing=current, actor=actor, request_id=request_id
        )
    except (Forbidden, InvalidInput) as refused:
        act = Act("rotate", actor, thing_name=thing_name, certificate_id=current, request_id=request_id)
        lifecycle.failed(act, refused, {"door": "est"})
        raise
    return Renewal(done.thing_name, done.certificate_id, done.certificate_pem, replayed=False)


def _thing_of(lifecycle: Lifecycle, current: str) -> str:
    control = lifecycle.control()
    described = control.describe_certificate(current)
    if described is None:
        raise Forbidden(
            f"AWS IoT has no certificate {current[:16]}... any more: it renews nothing.", rule="not-active"
        )
    if described.status != "ACTIVE":
        raise Forbidden(
            f"Certificate {current[:16]}... is {described.status} in AWS IoT: only an ACTIVE "
            "certificate renews.",
            rule="not-active",
        )
    things = control.principal_things(described.certificate_arn)
    if len(things) != 1:
        raise Forbidden(
            f"Certificate {current[:16]}... is attached to {len(things)} things in AWS IoT; a "
            "renewal is for the one thing it identifies.",
            rule="not-one-thing",
        )
    return things[0]


def _check_names(presented: x509.Certificate, csr: x509.CertificateSigningRequest) -> None:
    if csr.subject != presented.subject:
        raise InvalidInput(
            "The CSR's subject must be the certificate's being renewed (RFC 7030 4.2.2): "
            f"expected '{presented.subject.rfc4514_string()[:200]}', "
            f"got '{csr.subject.rfc4514_string()[:200]}'."
        )
    if _alt_names(csr) != _alt_names(presented):
        raise InvalidInput(
            "The CSR's subjectAltName must be the certificate's being renewed (RFC 7030 4.2.2)."
        )


def _alt_names(signed: x509.Certificate | x509.CertificateSigningRequest) -> list[x509.GeneralName]:
    return list(extension(signed, x509.SubjectAlternativeName) or [])


def _replacement(lifecycle: Lifecycle, thing_name: str, current: str) -> str | None:
    """The certificate a finished rotation issued in place of `current`, if one did."""
    for event in lifecycle.records().events(thing_name=thing_name, limit=RECENT_EVENTS):
        if event.action != "rotate" or event.outcome != "done" or event.certificate_id is None:
            continue
        if current in ((event.detail or {}).get("replaces") or []):
            return event.certificate_id
    return None


def _replay(
    lifecycle: Lifecycle, thing_name: str, current: str, replaced_by: str, csr: x509.CertificateSigningRequest
) -> Renewal:
    described = lifecycle.control().describe_certificate(replaced_by)
    if described is not None and described.certificate_pem and described.status == "ACTIVE":
        issued = x509.load_pem_x509_certificate(described.certificate_pem.encode("ascii"))
        same_key = issued.public_key().public_bytes(*SPKI) == csr.public_key().public_bytes(*SPKI)
        attached = any(
            certificate_id_of(arn) == replaced_by for arn in lifecycle.control().thing_principals(thing_name)
        )
        if same_key and attached:
            return Renewal(thing_name, replaced_by, described.certificate_pem, replayed=True)
    raise Forbidden(
        f"Certificate {current[:16]}... was already renewed (as {replaced_by[:16]}...): renew "
        "that one, presenting it.",
        rule="already-renewed",
    )
