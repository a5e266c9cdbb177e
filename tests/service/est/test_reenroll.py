"""simplereenroll over real mutual TLS: gunicorn serving TLS itself (a shape
service.callers.presented reads the client certificate from), the real emulator's data and control
planes, a real SQLite store. A device enrolls with an API key, then renews with the certificate it
got, presented in the TLS handshake."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from est_client import EstClient, ServerTls, b64, certificates_of, key_pem, make_csr
from served import API_KEY

from emulator import Emulator

SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


@dataclass
class Device:
    """A device's key and certificate on disk, as a device keeps them."""

    key: Any
    certificate: x509.Certificate
    cert_path: Path
    key_path: Path

    @property
    def certificate_id(self) -> str:
        import hashlib

        return hashlib.sha256(self.certificate.public_bytes(serialization.Encoding.DER)).hexdigest()

    def csr(self, *, key: Any = None, subject: x509.Name | None = None) -> bytes:
        builder = x509.CertificateSigningRequestBuilder().subject_name(subject or self.certificate.subject)
        return builder.sign(key or self.key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def save(directory: Path, name: str, key: Any, certificate: x509.Certificate) -> Device:
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key_pem(key))
    return Device(key, certificate, cert_path, key_path)


@pytest.fixture
def est(est_gunicorn: Callable[..., EstClient], server_tls: ServerTls, emulator: Emulator) -> EstClient:
    # Python's ssl checks a client certificate against --ca-certs: the emulator's CA issues every
    # certificate a renewal presents.
    return est_gunicorn(server_tls, client_ca=emulator.ca_path)


def enrolled(est: EstClient, tmp_path: Path, serial: str) -> Device:
    key = ec.generate_private_key(ec.SECP256R1())
    response = est.enroll(make_csr(serial, key=key))
    assert response.status_code == 200, response.text
    (certificate,) = certificates_of(response)
    return save(tmp_path / serial, "enrolled", key, certificate)


def reenroll(est: EstClient, device: Device, body: bytes, **kwargs: Any) -> requests.Response:
    return est.post("simplereenroll", b64(body), cert=(str(device.cert_path), str(device.key_path)), **kwargs)


def thing_certificates(emulator: Emulator, thing: str) -> dict[str, str]:
    """certificate id -> status of every certificate attached to `thing`."""
    described = emulator.registry.describe_thing(thing)
    assert described is not None
    return {c: str(emulator.registry.certificate_status(c)) for c in described["principals"]}


def events(est: EstClient, thing: str) -> list[dict[str, Any]]:
    response = requests.get(
        f"{est.base_url}/admin/devices/{thing}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        verify=est.verify,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["events"]
    return found


def test_a_device_renews_with_a_new_key_and_keeps_its_thing(
    est: EstClient, emulator: Emulator, tmp_path: Path
) -> None:
    device = enrolled(est, tmp_path, "SN-RENEW-1")
    new_key = ec.generate_private_key(ec.SECP256R1())
    response = reenroll(est, device, device.csr(key=new_key))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    (renewed,) = certificates_of(response)
    assert renewed.public_key().public_bytes(*SPKI) == new_key.public_key().public_bytes(*SPKI)
    assert renewed.subject == device.certificate.subject  # the same subject, as RFC 7030 says
    renewed_id = save(tmp_path, "renewed", new_key, renewed).certificate_id
    # Both attached and ACTIVE: the old one retires after the grace, so a device that lost the
    # answer can still retry with it.
    assert thing_certificates(emulator, "demo-SN-RENEW-1") == {
        device.certificate_id: "ACTIVE",
        renewed_id: "ACTIVE",
    }
    (rotation,) = [e for e in events(est, "demo-SN-RENEW-1") if e["action"] == "rotate"]
    assert rotation["outcome"] == "done" and rotation["certificateId"] == renewed_id
    assert rotation["actor"] == f"est:{device.certificate_id[:16]}"


def test_a_renewal_retried_with_the_same_csr_gets_the_same_certificate(
    est: EstClient, emulator: Emulator, tmp_path: Path
) -> None:
    device = enrolled(est, tmp_path, "SN-RENEW-2")
    body = device.csr(key=ec.generate_private_key(ec.SECP256R1()))
    first = reenroll(est, device, body)
    assert first.status_code == 200, first.text
    again = reenroll(est, device, body)
    assert again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert certificates_of(again) == certificates_of(first)
    assert len(thing_certificates(emulator, "demo-SN-RENEW-2")) == 2
    # Another CSR from the replaced certificate renews nothing more: the new one renews next.
    other = reenroll(est, device, device.csr(key=ec.generate_private_key(ec.SECP256R1())))
    assert other.status_code == 403, other.text
    assert "was already renewed" in other.text
    assert len(thing_certificates(emulator, "demo-SN-RENEW-2")) == 2


def test_a_renewal_with_the_same_key_and_then_from_the_new_certificate(
    est: EstClient, emulator: Emulator, tmp_path: Path
) -> None:
    device = enrolled(est, tmp_path, "SN-RENEW-3")
    response = reenroll(est, device, device.csr())  # renew: the same key
    assert response.status_code == 200, response.text
    (renewed,) = certificates_of(response)
    assert renewed.public_key().public_bytes(*SPKI) == device.key.public_key().public_bytes(*SPKI)
    second = save(tmp_path, "second", device.key, renewed)
    response = reenroll(est, second, second.csr(key=ec.generate_private_key(ec.SECP256R1())))
    assert response.status_code == 200, response.text
    assert len(thing_certificates(emulator, "demo-SN-RENEW-3")) == 3


def test_a_csr_with_another_subject_is_refused_saying_so(
    est: EstClient, emulator: Emulator, tmp_path: Path
) -> None:
    device = enrolled(est, tmp_path, "SN-RENEW-4")
    other = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "someone else")])
    response = reenroll(est, device, device.csr(subject=other))
    assert response.status_code == 400, response.text
    assert "subject must be the certificate's being renewed" in response.text
    assert len(thing_certificates(emulator, "demo-SN-RENEW-4")) == 1
    (refused,) = [e for e in events(est, "demo-SN-RENEW-4") if e["action"] == "rotate"]
    assert refused["outcome"] == "failed"


def test_a_certificate_not_issued_here_or_not_active_renews_nothing(
    est: EstClient, emulator: Emulator, tmp_path: Path
) -> None:
    # The emulator's claim certificate: ACTIVE in AWS IoT, issued by its CA, never handed out here.
    claim = x509.load_pem_x509_certificate(emulator.claim_cert_path.read_bytes())
    claim_key = serialization.load_pem_private_key(emulator.claim_key_path.read_bytes(), None)
    stranger = Device(claim_key, claim, emulator.claim_cert_path, emulator.claim_key_path)
    response = reenroll(est, stranger, stranger.csr())
    assert response.status_code == 403 and "was not issued by this service" in response.text
    device = enrolled(est, tmp_path, "SN-RENEW-5")
    emulator.registry.set_certificate_status(device.certificate_id, "REVOKED")
    response = reenroll(est, device, device.csr())
    assert response.status_code == 403 and "is REVOKED" in response.text
    assert len(thing_certificates(emulator, "demo-SN-RENEW-5")) == 1


def test_without_a_client_certificate_a_renewal_is_challenged_then_refused(est: EstClient) -> None:
    response = est.post("simplereenroll", b64(make_csr()))
    assert response.status_code == 401
    response = est.post("simplereenroll", b64(make_csr()), auth=("tool", est.key))
    assert response.status_code == 403 and "mutual TLS" in response.text
