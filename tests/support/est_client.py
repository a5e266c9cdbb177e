"""EST as a client speaks it, for the EST door's tests: CSRs in DER, base64 bodies, an HTTP client
of /.well-known/est/ (plain `requests`: EST is not in openapi.yaml, so ApiClient's contract checks
do not apply)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from service.serving.tls import local_listener

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
    """A CA and a server certificate for localhost, 127.0.0.1 and ::1: local mode's own
    (service.serving.tls), so the tests trust what a user of `make run` trusts."""
    listener = local_listener("127.0.0.1:0", directory)
    assert listener.ca is not None
    return ServerTls(listener.ca, listener.certificate, listener.key)


def key_pem(key: Any) -> bytes:
    return bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
