"""EST bodies as RFC 7030 and RFC 8951 say and as real clients send them (openssl and libest write
base64 in 64-character lines; some send one long line; some CRLF)."""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from service.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType
from service.est import codec


def csr_der() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-1")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda b: b,  # one line
        lambda b: b"\n".join(b[i : i + 64] for i in range(0, len(b), 64)) + b"\n",  # openssl
        lambda b: b"\r\n".join(b[i : i + 76] for i in range(0, len(b), 76)),  # MIME lines, CRLF
        lambda b: b"  " + b[:10] + b"\t" + b[10:] + b"\n\n",  # stray white space
    ],
    ids=["one-line", "64-lf", "76-crlf", "spaces-tabs"],
)
def test_a_pkcs10_in_base64_is_read_however_it_is_wrapped(wrap) -> None:
    der = csr_der()
    csr = codec.read_pkcs10(wrap(base64.b64encode(der)), "application/pkcs10")
    assert csr.public_bytes(serialization.Encoding.DER) == der


def test_content_type_parameters_are_ignored_and_the_media_type_is_required() -> None:
    body = base64.b64encode(csr_der())
    codec.read_pkcs10(body, "Application/PKCS10; charset=utf-8")
    for wrong in (None, "", "application/json", "application/pkcs7-mime"):
        with pytest.raises(UnsupportedMediaType, match="application/pkcs10"):
            codec.read_pkcs10(body, wrong)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        (b"", "empty"),
        (b"  \r\n", "empty"),
        (b"not base64 at all!", "not base64"),
        (b"QUJD", "not of a DER PKCS#10"),  # "ABC"
        (b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----", "not base64"),
        (b"QUJ", "not base64"),  # bad padding
    ],
)
def test_a_body_that_is_not_a_pkcs10_is_refused_saying_why(body: bytes, says: str) -> None:
    with pytest.raises(InvalidInput, match=says):
        codec.read_pkcs10(body, "application/pkcs10")


def test_an_oversize_body_is_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match="at most"):
        codec.read_pkcs10(b"A" * (codec.MAX_BODY_BYTES + 4), "application/pkcs10")


def test_certs_only_is_what_openssl_reads_as_pkcs7(tmp_path: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    body = codec.certs_only([certificate])
    assert all(len(line) <= 64 for line in body.splitlines())
    assert codec.read_certs_only(body) == [certificate]
    # openssl, as the RFC's examples use it: base64 -d | openssl pkcs7 -inform DER -print_certs
    der = tmp_path / "answer.p7"
    der.write_bytes(base64.b64decode(body))
    printed = subprocess.run(
        ["openssl", "pkcs7", "-inform", "DER", "-in", str(der), "-print_certs"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "subject=CN = test CA" in printed or "subject=CN=test CA" in printed
