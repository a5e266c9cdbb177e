"""Certificates as devices and operators hand them in: presented chains, CA bundles, CRLs, CSR keys.

Everything here is parsed by `cryptography`; nothing is matched with a regular expression. Sizes
are bounded before parsing. No message quotes a key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from service.errors import DeviceChainInvalid, DeviceChainTooLong, InvalidInput, OperationalKeyReused

E = TypeVar("E", bound=x509.ExtensionType)

# What a client may present: a device certificate and a few intermediates. More is refused
# before any is parsed further.
MAX_PRESENTED = 8
MAX_PRESENTED_BYTES = 64 * 1024
# What an operator may register as one CA: the CA and the certificates of its chain.
MAX_BUNDLE = 10
MAX_BUNDLE_BYTES = 64 * 1024
MAX_CRL_BYTES = 8 * 1024 * 1024
# A request body that carries the largest CRL: its DER in base64 in JSON, and a margin.
MAX_CRL_REQUEST_BYTES = MAX_CRL_BYTES * 4 // 3 + 64 * 1024
# Device and CA keys: what AWS IoT takes for device certificates (RSA of at least 2048 bits, EC on
# NIST P-256, P-384 or P-521), which is also what secure elements and TPMs hold.
MIN_RSA_BITS = 2048
CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_PEM_BEGIN = b"-----BEGIN "
_PEM_PRIVATE = b"PRIVATE KEY-----"


@dataclass(frozen=True)
class PresentedCertificate:
    """A device certificate as the audit trail names it: never its key."""

    subject: str
    issuer: str
    serial: str  # upper-case hex, as `openssl x509 -serial` prints it
    fingerprint_sha256: str  # lower-case hex of the DER


def fingerprint(certificate: x509.Certificate) -> str:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def serial_hex(number: int) -> str:
    text = format(number, "X")
    return text if len(text) % 2 == 0 else "0" + text


def describe(certificate: x509.Certificate) -> PresentedCertificate:
    return PresentedCertificate(
        subject=certificate.subject.rfc4514_string(),
        issuer=certificate.issuer.rfc4514_string(),
        serial=serial_hex(certificate.serial_number),
        fingerprint_sha256=fingerprint(certificate),
    )


def load_chain(presented: bytes | str | Sequence[bytes | x509.Certificate]) -> list[x509.Certificate]:
    """The presented chain, device certificate first: PEM (one or more), DER (one or several
    concatenated), or a sequence of DER certificates. DeviceChainInvalid / DeviceChainTooLong."""
    if isinstance(presented, str):
        presented = presented.encode("utf-8", "surrogateescape")
    if isinstance(presented, bytes):
        if len(presented) > MAX_PRESENTED_BYTES:
            raise DeviceChainTooLong(f"the presented chain is over {MAX_PRESENTED_BYTES} bytes")
        if _PEM_BEGIN in presented[:1024]:
            if presented.count(_PEM_CERTIFICATE) > MAX_PRESENTED:
                raise DeviceChainTooLong(_too_many())
            try:
                certificates = x509.load_pem_x509_certificates(presented)
            except ValueError:
                raise DeviceChainInvalid("the presented client certificate is not valid PEM") from None
        else:
            certificates = [_der_certificate(part) for part in _split_der(presented)]
    else:
        if len(presented) > MAX_PRESENTED:
            raise DeviceChainTooLong(_too_many())
        certificates = [
            item if isinstance(item, x509.Certificate) else _der_certificate(item) for item in presented
        ]
    if not certificates:
        raise DeviceChainInvalid("no client certificate was presented")
    if len(certificates) > MAX_PRESENTED:
        raise DeviceChainTooLong(_too_many())
    return certificates


def _too_many() -> str:
    return f"a client may present at most {MAX_PRESENTED} certificates (its own and its CAs')"


def _der_certificate(data: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise DeviceChainInvalid("the presented client certificate is not a DER certificate") from None


def _split_der(data: bytes) -> list[bytes]:
    """Concatenated DER SEQUENCEs, cut by their own length headers."""
    parts: list[bytes] = []
    at = 0
    while at < len(data):
        if len(parts) >= MAX_PRESENTED:
            raise DeviceChainTooLong(_too_many())
        if data[at] != 0x30 or at + 2 > len(data):
            raise DeviceChainInvalid("the presented client certificate is neither PEM nor DER")
        first = data[at + 1]
        if first < 0x80:
            header, length = 2, first
        else:
            count = first & 0x7F
            if not 1 <= count <= 3 or at + 2 + count > len(data):
                raise DeviceChainInvalid("the presented client certificate is neither PEM nor DER")
            header, length = 2 + count, int.from_bytes(data[at + 2 : at + 2 + count], "big")
        end = at + header + length
        if end > len(data):
            raise DeviceChainInvalid("the presented client certificate is cut short")
        parts.append(data[at:end])
        at = end
    return parts


def extension(certificate: x509.Certificate | x509.CertificateSigningRequest, kind: type[E]) -> E | None:
    """The certificate's (or CSR's) extension of this kind, or None when it has none."""
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def key_problem(key: CertificatePublicKeyTypes) -> str | None:
    """Why a device's or a CA's public key is not accepted, or None."""
    if isinstance(key, rsa.RSAPublicKey):
        return None if key.key_size >= MIN_RSA_BITS else f"an RSA key of {key.key_size} bits (at least 2048)"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in CURVES else f"an EC key on {key.curve.name} (P-256, P-384 or P-521)"
    return f"a {type(key).__name__.removeprefix('_').removesuffix('PublicKey')} key (RSA or EC only)"


def load_ca_bundle(pem: str) -> list[x509.Certificate]:
    """An operator's CA: PEM, the CA first, then certificates of its chain. InvalidInput (422)
    naming the field `certificates`; a private key in the text is refused, never kept."""
    data = pem.encode("utf-8", "surrogateescape") if isinstance(pem, str) else pem
    if len(data) > MAX_BUNDLE_BYTES:
        raise _bad_bundle(f"over {MAX_BUNDLE_BYTES} bytes")
    if _PEM_PRIVATE in data:
        raise _bad_bundle("holds a private key: send only certificates (the key stays with the CA)")
    if data.count(_PEM_CERTIFICATE) > MAX_BUNDLE:
        raise _bad_bundle(f"more than {MAX_BUNDLE} certificates")
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise _bad_bundle("not PEM certificates (-----BEGIN CERTIFICATE-----)") from None
    anchor = certificates[0]
    name = anchor.subject.rfc4514_string()
    constraints = extension(anchor, x509.BasicConstraints)
    if constraints is None or not constraints.ca:
        raise _bad_bundle(f"the first certificate ({name}) is not a CA certificate (basicConstraints cA)")
    usage = extension(anchor, x509.KeyUsage)
    if usage is None or not usage.key_cert_sign:
        raise _bad_bundle(f"the first certificate ({name}) has no keyUsage keyCertSign")
    for certificate in certificates:
        try:
            why = key_problem(certificate.public_key())
        except (ValueError, UnsupportedAlgorithm):
            why = "a key this service cannot read"
        if why is not None:
            raise _bad_bundle(f"{certificate.subject.rfc4514_string()} has {why}")
    return certificates


def _bad_bundle(why: str) -> InvalidInput:
    return InvalidInput(f"certificates: {why}", errors={"certificates": [why]}, status=422)


def load_crl(
    data: bytes | str, bundle: Sequence[x509.Certificate]
) -> tuple[x509.CertificateRevocationList, x509.Certificate]:
    """A manufacturer's CRL (PEM or DER) and the certificate of the registered CA's bundle that
    signed it; InvalidInput (422, field `crl`) when it is none of theirs or its signature fails."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if len(raw) > MAX_CRL_BYTES:
        raise _bad_crl(f"over {MAX_CRL_BYTES} bytes")
    try:
        crl = (
            x509.load_pem_x509_crl(raw)
            if raw.lstrip().startswith(b"-----BEGIN")
            else x509.load_der_x509_crl(raw)
        )
    except ValueError:
        raise _bad_crl("not a CRL (PEM or DER)") from None
    if not any(c.subject == crl.issuer for c in bundle):
        raise _bad_crl(
            f"issued by {crl.issuer.rfc4514_string()}, which is not this CA nor a certificate of its "
            "chain: register the CA that signs the device certificates, or add it to the CA's PEM"
        )
    signer = crl_signer(crl, bundle)
    if signer is None:
        raise _bad_crl(f"its signature does not verify with {crl.issuer.rfc4514_string()}'s key")
    usage = extension(signer, x509.KeyUsage)
    if usage is not None and not usage.crl_sign:
        raise _bad_crl(f"signed by {signer.subject.rfc4514_string()}, whose keyUsage lacks cRLSign")
    return crl, signer


def crl_signer(
    crl: x509.CertificateRevocationList, certificates: Sequence[x509.Certificate]
) -> x509.Certificate | None:
    """The certificate whose key signed the CRL, among those named as its issuer."""
    for certificate in certificates:
        if certificate.subject != crl.issuer:
            continue
        key = certificate.public_key()
        if isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey) and crl.is_signature_valid(key):
            return certificate
    return None


def _bad_crl(why: str) -> InvalidInput:
    return InvalidInput(f"crl: {why}", errors={"crl": [why]}, status=422)


def require_new_key(device_key: CertificatePublicKeyTypes, csr: x509.CertificateSigningRequest) -> None:
    """An attested device's operational key must be new: a CSR carrying the key of its device
    certificate (IDevID) is refused, so the factory identity never becomes the one in use."""
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if csr.public_key().public_bytes(*spki) == device_key.public_bytes(*spki):
        raise OperationalKeyReused(
            "the CSR carries the device certificate's public key; make a new key pair on the device "
            "for the operational certificate"
        )
