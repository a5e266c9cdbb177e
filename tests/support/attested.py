"""Devices that prove who they are, for tests: IDevID files a TLS client presents, the header nginx
sends for them, device CAs registered through the admin API, and waiting for every worker to
trust a CA registered at run time (service.callers.devices.trust refreshes every 2 s)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from emulator.security.idevids import Manufacturer
from emulator.security.keys import PrivateKey

PROBLEMS = "https://iot-provisioner.dev/problems/"
SERIAL_FROM_CERTIFICATE = {"SerialNumber": {"from": "subject.serialNumber"}}
# What a refusal looks like while a CA registered (or enabled) a moment ago is not trusted yet.
NOT_YET = {PROBLEMS + "device-unknown-ca", PROBLEMS + "device-group-disabled"}


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


def fingerprint(certificate: x509.Certificate) -> str:
    return certificate.fingerprint(hashes.SHA256()).hex()


def serial_hex(certificate: x509.Certificate) -> str:
    text = format(certificate.serial_number, "X")
    return text if len(text) % 2 == 0 else "0" + text


def nginx_header(*certificates: x509.Certificate) -> str:
    """X-Client-Certificate as nginx sets it: the PEM, URL-encoded ($ssl_client_escaped_cert)."""
    return quote(pem(*certificates).decode(), safe="")


def new_csr(key: PrivateKey | None = None, common_name: str = "device") -> str:
    """A CSR for `key` (default: a new P-256 key, as a device makes its operational key)."""
    key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


@dataclass(frozen=True)
class Identity:
    """A device certificate and its key as files a TLS client presents (`cert=identity.files`)."""

    certificate: x509.Certificate
    key: PrivateKey
    certificate_file: Path
    key_file: Path

    @property
    def files(self) -> tuple[str, str]:
        return str(self.certificate_file), str(self.key_file)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.certificate)

    @property
    def serial(self) -> str:
        return serial_hex(self.certificate)

    @classmethod
    def write(
        cls, folder: Path, key: PrivateKey, certificate: x509.Certificate, *chain: x509.Certificate
    ) -> Identity:
        folder.mkdir(parents=True, exist_ok=True)
        name = fingerprint(certificate)[:16]
        certificate_file, key_file = folder / f"{name}.pem", folder / f"{name}.key"
        certificate_file.write_bytes(pem(certificate, *chain))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        key_file.chmod(0o600)
        return cls(certificate, key, certificate_file, key_file)


def device(folder: Path, maker: Manufacturer, serial: str, **options: Any) -> Identity:
    """An IDevID of `maker` (options as Issuer.issue_idevid's), with its intermediate."""
    key, certificate = maker.issue(serial, **options)
    return Identity.write(folder, key, certificate, maker.intermediate.certificate)


def register_ca(post: Callable[..., requests.Response], certificates: bytes, **fields: Any) -> dict[str, Any]:
    """POST /admin/device-cas with an admin key (`post` is the admin client's); the CA's object."""
    body = {"template": "demo", "certificates": certificates.decode(), "parameters": SERIAL_FROM_CERTIFICATE}
    body.update(fields)
    response = post("/admin/device-cas", json=body)
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()
    return found


def until_trusted(send: Callable[[], requests.Response], timeout: float = 8.0) -> requests.Response:
    """Send until the answer is not 'unknown CA' or 'group disabled' (the workers had not
    reloaded their CAs yet), at most `timeout` seconds; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        response = send()
        if response.status_code != 403 or response.json().get("type") not in NOT_YET:
            return response
        if time.monotonic() > deadline:
            return response
        time.sleep(0.2)


def problem_type(response: requests.Response) -> str:
    return str(response.json().get("type", "")).removeprefix(PROBLEMS)


def audit_of(get: Callable[..., requests.Response], certificate: x509.Certificate) -> list[Mapping[str, Any]]:
    """The audit records of a device certificate, newest first (GET /admin/registrations)."""
    response = get(f"/admin/registrations?deviceFingerprint={fingerprint(certificate)}")
    assert response.status_code == 200, response.text
    items: list[Mapping[str, Any]] = response.json()["items"]
    return items
