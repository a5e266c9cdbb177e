"""Verifying a device's certificate chain against the registered device CAs.

The chain is verified by `cryptography.x509.verification` (path building, signatures and their
algorithms, validity, basic constraints and path length, name chaining), with two changes to its
Web PKI end-entity policy, because device identities (IEEE 802.1AR IDevIDs) are not web servers:
no subjectAlternativeName is required (IDevIDs usually have none) and neither is an
authorityKeyIdentifier. Kept: an extendedKeyUsage, when present, must hold clientAuth; a keyUsage,
when present, must hold digitalSignature (what a TLS client signs with) and not keyCertSign. The
device key must be RSA >= 2048 or EC P-256/P-384/P-521. Then the CA's block list (device serial:
the subject's serialNumber or CN; or the SHA-256 of a certificate of the chain) and its CRL.

Each worker keeps, per CA, what a check needs (its trust store, block list, revoked serials,
parameter sources): a check costs the signature verifications and no query. Every
`REFRESH_SECONDS` it reads the CAs' revisions (one small query) and reloads the CAs that changed,
so a CA registered, a device blocked or a CRL loaded reaches every worker within that time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from service.callers.devices.certificates import (
    PresentedCertificate,
    crl_signer,
    describe,
    fingerprint,
    key_problem,
    load_ca_bundle,
    load_chain,
)
from service.callers.devices.model import DeviceGroup, DeviceIdentity
from service.callers.devices.parameters import values_of
from service.errors import (
    DeviceBlocked,
    DeviceCertificateExpired,
    DeviceCertificateNotYetValid,
    DeviceChainInvalid,
    DeviceChainTooLong,
    DeviceGroupAmbiguous,
    DeviceGroupDisabled,
    DeviceRefused,
    DeviceRevoked,
    DeviceWrongUsage,
    ServiceError,
    UnknownDeviceCa,
)

log = logging.getLogger("service.devices")

REFRESH_SECONDS = 2.0
_SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def _key_usage(policy: Any, certificate: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is None:
        return
    if usage.key_cert_sign:
        raise ValueError("keyUsage asserts keyCertSign, which a device certificate must not")
    if not usage.digital_signature:
        raise ValueError("keyUsage lacks digitalSignature, which a TLS client signs with")


_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .may_be_present(x509.AuthorityKeyIdentifier, Criticality.NON_CRITICAL, None)
    .may_be_present(x509.KeyUsage, Criticality.AGNOSTIC, _key_usage)
)
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca()


class DeviceCaSource(Protocol):
    """Where registered CAs come from (service.store.device_cas.DeviceCaQueries)."""

    def revisions(self) -> dict[str, int]: ...

    def material(self, ca_id: str) -> tuple[Any, list[Any], Any | None] | None: ...


@dataclass(frozen=True)
class _Crl:
    issuer: x509.Name
    signer_spki: bytes
    revoked: frozenset[int]


@dataclass(frozen=True)
class CaTrust:
    """One CA, ready to check chains against: built once per revision."""

    group: DeviceGroup
    revision: int
    anchor: x509.Certificate
    extras: tuple[x509.Certificate, ...]  # the rest of the registered PEM, as intermediates
    store: Store
    names: frozenset[bytes]  # DER subjects of the anchor and the extras
    blocked_serials: frozenset[str]
    blocked_fingerprints: frozenset[str]
    crl: _Crl | None

    @classmethod
    def build(cls, record: Any, blocks: Sequence[Any] = (), crl: Any | None = None) -> CaTrust:
        """From store records (service.store.device_cas): DeviceCaRecord, BlockRecords, CrlRecord."""
        certificates = load_ca_bundle(record.certificates)
        anchor, extras = certificates[0], tuple(certificates[1:])
        return cls(
            group=DeviceGroup.from_record(record),
            revision=record.revision,
            anchor=anchor,
            extras=extras,
            store=Store([anchor]),
            names=frozenset(c.subject.public_bytes() for c in certificates),
            blocked_serials=frozenset(b.value for b in blocks if b.kind == "serial"),
            blocked_fingerprints=frozenset(b.value for b in blocks if b.kind == "fingerprint"),
            crl=_crl_of(crl.crl, certificates) if crl is not None else None,
        )


def _crl_of(der: bytes, certificates: Sequence[x509.Certificate]) -> _Crl:
    crl = x509.load_der_x509_crl(der)
    signer = crl_signer(crl, certificates)
    if signer is None:
        raise ValueError("the stored CRL's signature no longer verifies with the CA's certificates")
    return _Crl(
        issuer=crl.issuer,
        signer_spki=signer.public_key().public_bytes(*_SPKI),
        revoked=frozenset(entry.serial_number for entry in crl),
    )


class Trust:
    """The registered device CAs of this process, refreshed from the store."""

    def __init__(
        self,
        source: DeviceCaSource | None = None,
        *,
        cas: Sequence[CaTrust] = (),
        refresh_seconds: float = REFRESH_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._checked = -float("inf")
        self._cas: dict[str, CaTrust] = {ca.group.ca_id: ca for ca in cas}
        self._by_name = _index(self._cas)

    def refresh(self, *, force: bool = False) -> None:
        """Reload the CAs whose revision moved (at most once per refresh_seconds unless forced)."""
        if self._source is None:
            return
        with self._lock:
            now = self._clock()
            if not force and now - self._checked < self._refresh_seconds:
                return
            revisions = self._source.revisions()
            fresh: dict[str, CaTrust] = {}
            for ca_id, revision in revisions.items():
                known = self._cas.get(ca_id)
                if known is not None and known.revision == revision:
                    fresh[ca_id] = known
                    continue
                material = self._source.material(ca_id)
                if material is None:
                    continue  # deleted meanwhile
                try:
                    fresh[ca_id] = CaTrust.build(*material)
                except (ServiceError, ValueError) as error:
                    # Checked when stored; a CA that no longer loads trusts nobody, and says so.
                    log.error("device CA %s cannot be used: %s", ca_id, error)
            self._cas = fresh
            self._by_name = _index(fresh)
            self._checked = now

    def verify(
        self,
        presented: bytes | str | Sequence[bytes | x509.Certificate],
        *,
        now: datetime | None = None,
        template: str | None = None,
    ) -> DeviceIdentity:
        """The identity a presented chain (device certificate first) proves, or the DeviceRefused
        that says why not. `template` (an EST label, a request's template) narrows the groups."""
        if now is None:
            now = datetime.now(UTC)
        if self._clock() - self._checked >= self._refresh_seconds:
            self.refresh()
        chain = load_chain(presented)
        leaf, intermediates = chain[0], chain[1:]
        seen = describe(leaf)
        candidates = self._candidates(chain, template)
        if not candidates:
            where = f" for template '{template}'" if template is not None else ""
            raise UnknownDeviceCa(
                f"no registered device CA{where} issued {seen.subject} (issuer {seen.issuer}); a "
                "device whose CA is registered presents the intermediates between them too",
                certificate=seen,
            )
        try:
            _check_validity(leaf, now, "the device certificate")
            why = key_problem(leaf.public_key())
        except DeviceRefused as refused:
            refused.certificate = seen
            raise
        except ValueError:
            why = "a key this service cannot read"
        if why is not None:
            raise DeviceChainInvalid(f"the device certificate has {why}", certificate=seen)
        enabled: list[DeviceIdentity] = []
        disabled: list[DeviceIdentity] = []
        refusals: list[DeviceRefused] = []  # enabled groups' first (candidates come in that order)
        for ca in candidates:
            try:
                identity = _verify_with(ca, leaf, intermediates, now, seen)
            except DeviceRefused as refused:
                refused.certificate = seen
                refusals.append(refused)
                continue
            (enabled if ca.group.enabled else disabled).append(identity)
        if refusals and not enabled and any(ca.group.enabled for ca in candidates):
            raise refusals[0]  # an enabled group's own refusal (blocked, revoked) says the most
        if len(enabled) == 1:
            return enabled[0]
        if len(enabled) > 1:
            templates = ", ".join(sorted({identity.template for identity in enabled}))
            raise DeviceGroupAmbiguous(
                f"the device's CA is registered for several templates ({templates}): name the "
                "template (the EST label, or templateName)",
                certificate=seen,
            )
        if disabled:
            raise DeviceGroupDisabled(
                f"the enrollment group {disabled[0].group.ca_id} of this device's CA is disabled",
                certificate=seen,
            )
        raise refusals[0]

    def _candidates(self, chain: Sequence[x509.Certificate], template: str | None) -> list[CaTrust]:
        found: dict[str, CaTrust] = {}
        by_name = self._by_name
        for certificate in chain:
            for ca in by_name.get(certificate.issuer.public_bytes(), ()):
                if template is None or ca.group.template == template:
                    found.setdefault(ca.group.ca_id, ca)
        # Enabled groups first: their refusal says more than a disabled group's.
        return sorted(found.values(), key=lambda ca: not ca.group.enabled)


def _index(cas: dict[str, CaTrust]) -> dict[bytes, list[CaTrust]]:
    by_name: dict[bytes, list[CaTrust]] = {}
    for ca in cas.values():
        for name in ca.names:
            by_name.setdefault(name, []).append(ca)
    return by_name


def _check_validity(certificate: x509.Certificate, now: datetime, what: str) -> None:
    if now > certificate.not_valid_after_utc:
        raise DeviceCertificateExpired(
            f"{what} ({certificate.subject.rfc4514_string()}) expired at "
            f"{certificate.not_valid_after_utc.isoformat()}"
        )
    if now < certificate.not_valid_before_utc:
        raise DeviceCertificateNotYetValid(
            f"{what} ({certificate.subject.rfc4514_string()}) is valid from "
            f"{certificate.not_valid_before_utc.isoformat()}"
        )


def _verify_with(
    ca: CaTrust,
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    now: datetime,
    seen: PresentedCertificate,
) -> DeviceIdentity:
    verifier = (
        PolicyBuilder()
        .store(ca.store)
        .time(now)
        .max_chain_depth(ca.group.max_chain_depth)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(leaf, [*intermediates, *ca.extras]).chain
    except VerificationError as error:
        raise _refusal(ca, str(error), [*intermediates, ca.anchor, *ca.extras], now) from None
    _check_blocks(ca, chain, seen)
    _check_crl(ca, chain)
    return DeviceIdentity(
        group=ca.group,
        parameters=values_of(leaf, ca.group.parameters),
        certificate=seen,
        public_key=leaf.public_key(),
    )


def _check_blocks(ca: CaTrust, chain: Sequence[x509.Certificate], seen: PresentedCertificate) -> None:
    if ca.blocked_serials:
        leaf = chain[0]
        for oid in (x509.NameOID.SERIAL_NUMBER, x509.NameOID.COMMON_NAME):
            for attribute in leaf.subject.get_attributes_for_oid(oid):
                if attribute.value in ca.blocked_serials:
                    raise DeviceBlocked(f"device {attribute.value!s} is blocked in group {ca.group.ca_id}")
    if ca.blocked_fingerprints:
        for index, certificate in enumerate(chain[:-1]):
            digest = seen.fingerprint_sha256 if index == 0 else fingerprint(certificate)
            if digest in ca.blocked_fingerprints:
                what = "the device certificate" if index == 0 else certificate.subject.rfc4514_string()
                raise DeviceBlocked(f"{what} (SHA-256 {digest}) is blocked in group {ca.group.ca_id}")


def _check_crl(ca: CaTrust, chain: Sequence[x509.Certificate]) -> None:
    crl = ca.crl
    if crl is None:
        return
    for certificate, issuer in zip(chain, chain[1:], strict=False):
        if certificate.serial_number not in crl.revoked or certificate.issuer != crl.issuer:
            continue
        if issuer.public_key().public_bytes(*_SPKI) != crl.signer_spki:
            continue  # another CA of that name: this CRL does not speak for it
        what = "the device certificate" if certificate is chain[0] else certificate.subject.rfc4514_string()
        raise DeviceRevoked(
            f"{what} (serial {format(certificate.serial_number, 'X')}) is revoked by the CRL of "
            f"{crl.issuer.rfc4514_string()} loaded for group {ca.group.ca_id}"
        )


def _refusal(ca: CaTrust, message: str, others: Sequence[x509.Certificate], now: datetime) -> DeviceRefused:
    """cryptography's reason, as the refusal it is."""
    reason = message.removeprefix("validation failed: ")
    # Failures at the device certificate itself come without this prefix; those found while
    # building the path through the CAs come with it.
    at_device = not reason.startswith("candidates exhausted: ")
    reason = reason.removeprefix("candidates exhausted: ").partition(" (encountered processing")[0]
    group = ca.group.ca_id
    if "not valid at validation time" in reason:
        for certificate in others:
            try:
                _check_validity(certificate, now, "a CA certificate of the chain")
            except DeviceRefused as refused:
                return refused
        return DeviceCertificateExpired(f"a certificate of the chain is not valid now (group {group})")
    if "exceeds max depth" in reason:
        return DeviceChainTooLong(
            f"the chain to group {group}'s CA needs more than {ca.group.max_chain_depth} intermediate CA(s)"
        )
    if "path length constraint" in reason:
        return DeviceChainTooLong(f"the chain is longer than a CA's pathLenConstraint allows (group {group})")
    if at_device and ("EKU" in reason or "keyUsage" in reason):
        if "validator failed" in reason:
            reason = reason.rpartition("ValueError: ")[2]
        return DeviceWrongUsage(f"the device certificate is not for client authentication: {reason}")
    if "no interior errors" in reason:
        return UnknownDeviceCa(
            f"the chain does not lead to group {group}'s CA ({ca.anchor.subject.rfc4514_string()}): "
            "a CA of that name did not sign it, or an intermediate is missing"
        )
    return DeviceChainInvalid(f"the chain to group {group}'s CA is not valid: {reason}")
