"""EST's bodies (RFC 7030, clarified by RFC 8951): PKCS#10 in, certs-only PKCS#7 out, base64.

Requests carry base64 of a DER PKCS#10, with or without line breaks or other white space, and
with or without a `Content-Transfer-Encoding` header (RFC 8951: not an HTTP header; ignored). Answers
are base64 of a degenerate CMS SignedData holding certificates, in lines of 64 characters as
libest and openssl write them. Everything here raises the service's own errors, naming what is
wrong; nothing here knows Flask.
"""

from __future__ import annotations

import base64
import binascii
import re

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import pkcs7

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType

PKCS10 = "application/pkcs10"
CERTS_ONLY = "application/pkcs7-mime; smime-type=certs-only"
CACERTS = "application/pkcs7-mime"
CSRATTRS = "application/csrattrs"
# A PKCS#10 of an RSA 4096 key with a few extensions is under 2 KB; base64 and line breaks add a
# third. Anything far larger is not a CSR a device sends.
MAX_BODY_BYTES = 16 * 1024
_WHITE_SPACE = re.compile(rb"[ \t\r\n]+")
_BASE64 = re.compile(rb"\A[A-Za-z0-9+/]*={0,2}\Z")


def read_pkcs10(body: bytes, content_type: str | None) -> x509.CertificateSigningRequest:
    """The CSR of a simpleenroll or simplereenroll body; its signature is checked by the caller."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != PKCS10:
        raise UnsupportedMediaType(
            f"the body must be {PKCS10} (base64 of a DER PKCS#10), not {media or 'untyped'}"
        )
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is {len(body)} bytes; a PKCS#10 is at most {MAX_BODY_BYTES}")
    der = _unbase64(body, "the body")
    try:
        return x509.load_der_x509_csr(der)
    except (ValueError, UnsupportedAlgorithm):
        raise InvalidInput("the body is base64, but not of a DER PKCS#10 certification request") from None


def _unbase64(body: bytes, what: str) -> bytes:
    packed = _WHITE_SPACE.sub(b"", body)
    if not packed:
        raise InvalidInput(f"{what} is empty: expected base64 of a DER PKCS#10")
    if not _BASE64.match(packed) or len(packed) % 4:
        raise InvalidInput(f"{what} is not base64 (RFC 7030: base64 of the DER encoding)")
    try:
        return base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput(f"{what} is not base64 (RFC 7030: base64 of the DER encoding)") from None


def certs_only(certificates: list[x509.Certificate]) -> bytes:
    """Base64 of a certs-only PKCS#7 holding `certificates`, in 64-character lines."""
    der = pkcs7.serialize_certificates(certificates, serialization.Encoding.DER)
    encoded = base64.b64encode(der)
    return b"\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64)) + b"\n"


def read_certs_only(body: bytes) -> list[x509.Certificate]:
    """The certificates of a certs-only PKCS#7 in base64 (what a client does with our answers)."""
    return pkcs7.load_der_pkcs7_certificates(_unbase64(body, "the PKCS#7"))


def csr_attributes(oids: list[x509.ObjectIdentifier]) -> bytes:
    """Base64 of a DER CsrAttrs (RFC 7030 4.5.2) holding bare OIDs, in 64-character lines; empty
    for none (the door then answers 204)."""
    if not oids:
        return b""
    encoded = base64.b64encode(_der(0x30, b"".join(_der(0x06, _oid_content(oid)) for oid in oids)))
    return b"\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64)) + b"\n"


def _oid_content(oid: x509.ObjectIdentifier) -> bytes:
    # X.690 8.19: the first two arcs in one number (40 * first + second), every arc in base 128
    # with the high bit set on all but its last byte.
    arcs = [int(arc) for arc in oid.dotted_string.split(".")]
    content = bytearray()
    for number in [40 * arcs[0] + arcs[1], *arcs[2:]]:
        chunk = [number & 0x7F]
        number >>= 7
        while number:
            chunk.append(0x80 | (number & 0x7F))
            number >>= 7
        content += bytes(reversed(chunk))
    return bytes(content)


def _der(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content
