"""EST as a client speaks it, for the EST door's tests: CSRs in DER, base64 bodies, an HTTP client
of /.well-known/est/ (plain `requests`: EST is not in openapi.yaml, so ApiClient's contract checks
do not apply)."""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

TIMEOUT = 30.0
PKCS10 = "application/pkcs10"


def make_csr(serial: str | None = "SN-1", *, common_name: str | None = None, key: Any = None) -> bytes:
    """A DER PKCS#10 for a fresh P-256 key (or `key`), the serial in the subject's serialNumber."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    attributes = []
    if serial is not None:
        attributes.append(x509.NameAttribute(NameOID.SERIAL_NUMBER, serial))
    if common_name is not None:
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    csr = (
        x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attributes)).sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def weak_rsa_csr() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return make_csr("SN-WEAK", key=key)


def b64(der: bytes) -> bytes:
    return base64.encodebytes(der)  # 76-character lines, as MIME and many clients write it


def basic(key: str, user: str = "factory-tool") -> tuple[str, str]:
    return (user, key)


@dataclass
class EstClient:
    base_url: str
    key: str
    api: Any = None  # the ApiClient of the same app (admin API), when it runs in this process
    verify: Any = True  # requests' verify: the server's CA file over TLS

    def url(self, operation: str, label: str | None = None) -> str:
        middle = f"{label}/" if label is not None else ""
        return f"{self.base_url}/.well-known/est/{middle}{operation}"

    def get(self, operation: str, label: str | None = None, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("verify", self.verify)
        return requests.get(self.url(operation, label), **kwargs)

    def post(
        self, operation: str, body: bytes, label: str | None = "demo", **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("timeout", TIMEOUT)
        kwargs.setdefault("verify", self.verify)
        headers = {"Content-Type": PKCS10, **kwargs.pop("headers", {})}
        return requests.post(self.url(operation, label), data=body, headers=headers, **kwargs)

    def enroll(
        self, der: bytes, label: str | None = "demo", *, key: str | None = None, **kwargs: Any
    ) -> requests.Response:
        kwargs.setdefault("auth", basic(key or self.key))
        return self.post("simpleenroll", b64(der), label, **kwargs)


def certificates_of(response: requests.Response) -> list[x509.Certificate]:
    from service.est import codec

    return codec.read_certs_only(response.content)


@dataclass(frozen=True)
class ServerTls:
    """A test CA and a server certificate it signed for 127.0.0.1 and localhost (PEM files)."""

    ca_path: Path
    cert_path: Path
    key_path: Path


def make_server_tls(directory: Path) -> ServerTls:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "EST test server CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    tls = ServerTls(directory / "server-ca.pem", directory / "server.pem", directory / "server.key")
    tls.ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    tls.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    tls.key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    tls.key_path.chmod(0o600)
    return tls


def key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
