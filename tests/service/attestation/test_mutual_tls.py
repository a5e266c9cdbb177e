"""Attestation over real mutual TLS, in the production shape (`python -m service.serving.production`: nginx
with `ssl_verify_client optional_no_ca` in front of gunicorn, SQLite, the real emulator): every
refusal precise and in the audit trail with the certificate's issuer, serial and fingerprint;
TLS 1.2 or newer only, no renegotiation; a CA registered at run time trusted without a restart;
a client's own X-Client-Certificate never believed. Needs Debian's nginx (skipped without it,
except in CI) and openssl."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from attested import (
    Identity,
    audit_of,
    device,
    new_csr,
    nginx_header,
    problem_type,
    register_ca,
    until_trusted,
)
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from served import API_KEY, emulator_env, free_port, stop, wait_ready

from emulator import Emulator
from emulator.security.idevids import Manufacturer
from service.serving import tls

HAVE_NGINX = shutil.which("nginx") is not None or os.access("/usr/sbin/nginx", os.X_OK)
pytestmark = pytest.mark.skipif(
    not HAVE_NGINX and os.environ.get("CI") != "true", reason="nginx is not installed (apt-get install nginx)"
)
TIMEOUT = 30


@dataclass
class Shape:
    base: str  # the plain listener (admin calls)
    secure: str  # the mutual-TLS listener
    ca: Path  # what clients trust for the server
    folder: Path  # where device identities are written

    def admin(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {API_KEY}"}
        return requests.request(method, self.base + path, headers=headers, timeout=TIMEOUT, **kwargs)

    def post_admin(self, path: str, **kwargs: Any) -> requests.Response:
        return self.admin("POST", path, **kwargs)

    def get_admin(self, path: str, **kwargs: Any) -> requests.Response:
        return self.admin("GET", path, **kwargs)

    def provision(self, identity: Identity | None, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return requests.post(
            self.secure + "/provision",
            json=body if body is not None else {"csr": new_csr()},
            cert=identity.files if identity is not None else None,
            verify=str(self.ca),
            timeout=TIMEOUT,
            **kwargs,
        )


@pytest.fixture(scope="module")
def shape(shared_emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shape]:
    folder = tmp_path_factory.mktemp("mtls")
    port, tls_port = free_port(), free_port()
    listener = tls.local_listener(f"127.0.0.1:{tls_port}", folder / "tls")
    env = emulator_env(
        shared_emulator,
        PROVISIONER_BIND=f"127.0.0.1:{port}",
        PROVISIONER_WORKERS="1",
        PROVISIONER_TLS_BIND=listener.bind,
        PROVISIONER_TLS_CERT=str(listener.certificate),
        PROVISIONER_TLS_KEY=str(listener.key),
        PROVISIONER_DATABASE_URL=f"sqlite:///{folder / 'store.db'}",
    )
    log = folder / "production.log"
    with open(log, "ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "service.serving.production", "--run-dir", str(folder / "run")],
            env=env,
            stdout=output,
            stderr=output,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(base, process)
        assert listener.ca is not None
        yield Shape(base, f"https://localhost:{tls_port}", listener.ca, folder / "devices")
    finally:
        assert stop(process) == 0, log.read_text()[-3000:]


@pytest.fixture
def maker(shape: Shape) -> Manufacturer:
    """A manufacturer of its own per test (names of its own too), its CA registered for demo."""
    made = Manufacturer.create(f"TLS Devices {uuid.uuid4().hex[:8]}")
    register_ca(shape.post_admin, made.ca_pem())
    return made


def refused(
    shape: Shape, identity: Identity, expected: str, status: int = 403, *, wait: bool = True, **body: Any
) -> dict[str, Any]:
    """The device is refused with `expected` (once its CA is trusted, unless not `wait`); the
    audit record of that attempt names its certificate."""
    send = lambda: shape.provision(identity, {"csr": new_csr(), **body})  # noqa: E731
    response = until_trusted(send) if wait else send()
    assert response.status_code == status, response.text
    assert problem_type(response) == expected, response.text
    record = audit_of(shape.get_admin, identity.certificate)[0]  # the newest
    assert record["outcome"] == "refused" and record["httpStatus"] == status
    assert record["problem"] == expected
    assert record["deviceIssuer"] == identity.certificate.issuer.rfc4514_string()
    assert record["deviceSerial"] == identity.serial
    assert record["deviceFingerprint"] == identity.fingerprint
    found: dict[str, Any] = response.json()
    return found


def test_a_device_provisions_over_mutual_tls_with_no_api_key(shape: Shape, maker: Manufacturer) -> None:
    identity = device(shape.folder, maker, "TLS-000001")
    response = until_trusted(lambda: shape.provision(identity))
    assert response.status_code == 201, response.text
    assert response.json()["thingName"] == "demo-TLS-000001"
    record = audit_of(shape.get_admin, identity.certificate)[0]
    assert record["outcome"] == "provisioned" and record["deviceCaId"]
    assert (record["deviceSerial"], record["deviceFingerprint"]) == (identity.serial, identity.fingerprint)
    assert record["callerAddress"] == "127.0.0.1"
    assert "PRIVATE KEY" not in str(record)


def test_a_ca_registered_at_run_time_is_trusted_without_a_restart(shape: Shape) -> None:
    made = Manufacturer.create("Late Devices")
    identity = device(shape.folder, made, "LATE-000001")
    assert problem_type(shape.provision(identity)) == "device-unknown-ca"
    register_ca(shape.post_admin, made.ca_pem())
    assert until_trusted(lambda: shape.provision(identity)).status_code == 201


def test_unknown_ca(shape: Shape) -> None:
    stranger = Manufacturer.create("Nobody Registered This")
    problem = refused(shape, device(shape.folder, stranger, "UNK-000001"), "device-unknown-ca", wait=False)
    assert "no registered device CA" in problem["detail"]


def test_expired_and_not_yet_valid(shape: Shape, maker: Manufacturer) -> None:
    now = dt.datetime.now(dt.UTC)
    expired = device(
        shape.folder,
        maker,
        "OLD-000001",
        not_before=now - dt.timedelta(days=30),
        not_after=now - dt.timedelta(days=1),
    )
    assert "expired" in refused(shape, expired, "device-certificate-expired")["detail"]
    early = device(shape.folder, maker, "NEW-000001", not_before=now + dt.timedelta(days=1))
    refused(shape, early, "device-certificate-not-yet-valid")


def test_blocked_by_serial_and_by_fingerprint(shape: Shape) -> None:
    made = Manufacturer.create("Blocking Devices")
    ca_id = register_ca(shape.post_admin, made.ca_pem(), enabled=False)["caId"]
    by_serial = device(shape.folder, made, "BLK-000001")
    by_fingerprint = device(shape.folder, made, "BLK-000002")
    for body in (
        {"kind": "serial", "value": "BLK-000001"},
        {"kind": "fingerprint", "value": by_fingerprint.fingerprint},
    ):
        assert shape.post_admin(f"/admin/device-cas/{ca_id}/blocks", json=body).status_code == 201
    assert shape.admin("PATCH", f"/admin/device-cas/{ca_id}", json={"enabled": True}).status_code == 200
    refused(shape, by_serial, "device-blocked")
    refused(shape, by_fingerprint, "device-blocked")


def test_revoked_by_the_manufacturers_crl(shape: Shape) -> None:
    made = Manufacturer.create("Revoking Devices")
    ca_id = register_ca(shape.post_admin, made.ca_pem(), enabled=False)["caId"]
    identity = device(shape.folder, made, "CRL-000001")
    crl = made.intermediate.crl([identity.certificate]).decode()
    loaded = shape.admin("PUT", f"/admin/device-cas/{ca_id}/crl", json={"crl": crl})
    assert loaded.status_code == 200 and loaded.json()["revoked"] == 1, loaded.text
    assert shape.admin("PATCH", f"/admin/device-cas/{ca_id}", json={"enabled": True}).status_code == 200
    assert "revoked by the CRL" in refused(shape, identity, "device-revoked")["detail"]


def test_wrong_extended_key_usage(shape: Shape, maker: Manufacturer) -> None:
    server_only = x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH])
    identity = device(shape.folder, maker, "EKU-000001", extensions=[(server_only, False)])
    refused(shape, identity, "device-wrong-usage")


def test_chain_longer_than_the_group_allows(shape: Shape) -> None:
    made = Manufacturer.create("Deep Devices")
    register_ca(shape.post_admin, made.ca_pem(), maxChainDepth=0)  # devices signed by the root itself
    refused(shape, device(shape.folder, made, "DEEP-000001"), "device-chain-too-long")


def test_csr_with_a_broken_signature(shape: Shape, maker: Manufacturer) -> None:
    identity = device(shape.folder, maker, "SIG-000001")
    csr = x509.load_pem_x509_csr(new_csr().encode())
    der = bytearray(csr.public_bytes(serialization.Encoding.DER))
    der[-5] ^= 0x01  # inside the signature
    broken = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM).decode()
    response = until_trusted(lambda: shape.provision(identity, {"csr": broken}))
    assert response.status_code == 422, response.text
    assert "signature" in " ".join(response.json()["errors"]["csr"])
    record = audit_of(shape.get_admin, identity.certificate)[0]
    assert record["httpStatus"] == 422 and record["deviceFingerprint"] == identity.fingerprint


def test_csr_reusing_the_idevid_key(shape: Shape, maker: Manufacturer) -> None:
    identity = device(shape.folder, maker, "KEY-000001")
    refused(shape, identity, "operational-key-reused", 422, csr=new_csr(identity.key))


def test_oversize_body_and_oversize_certificate(shape: Shape, maker: Manufacturer) -> None:
    identity = device(shape.folder, maker, "BIG-000001")
    too_large = shape.provision(identity, {"csr": new_csr(), "parameters": {"DeviceLocation": "x" * 70_000}})
    assert too_large.status_code == 413 and problem_type(too_large) == "payload-too-large"
    # A device certificate whose PEM is over 64 KiB (a bulky private extension; TLS carries it)
    # is refused by its size, unparsed.
    bulky = x509.UnrecognizedExtension(ObjectIdentifier("1.3.6.1.4.1.55555.1"), bytes(55_000))
    big = device(shape.folder, maker, "BIG-000002", extensions=[(bulky, False)])
    response = until_trusted(lambda: shape.provision(big))
    assert response.status_code == 403 and problem_type(response) == "device-chain-too-long", response.text
    assert "over 65536 bytes" in response.json()["detail"]
    # Still an attempt in the audit trail, with what could be said without parsing it.
    newest = shape.get_admin("/admin/registrations?limit=1").json()["items"][0]
    assert newest["requestId"] == response.json()["requestId"]
    assert newest["problem"] == "device-chain-too-long" and newest["deviceFingerprint"] is None


def test_a_client_header_is_never_believed(shape: Shape, maker: Manufacturer) -> None:
    _, certificate = maker.issue("FORGE-000001")
    forged = {"X-Client-Certificate": nginx_header(certificate)}
    body = {"templateName": "demo", "csr": new_csr()}
    # On the plain listener, and on the TLS one without a certificate: nginx drops the header.
    plain = requests.post(shape.base + "/provision", json=body, headers=forged, timeout=TIMEOUT)
    secure = shape.provision(None, body, headers=forged)
    assert (plain.status_code, secure.status_code) == (401, 401), (plain.text, secure.text)
    # With another device's certificate, the connection's certificate counts, not the header.
    other = device(shape.folder, maker, "FORGE-000002")
    response = until_trusted(lambda: shape.provision(other, {"csr": new_csr()}, headers=forged))
    assert response.status_code == 201 and response.json()["thingName"] == "demo-FORGE-000002"


def test_api_keys_work_on_the_tls_listener_as_before(shape: Shape) -> None:
    body = {"templateName": "demo", "parameters": {"SerialNumber": "KEYED-000001"}, "csr": new_csr()}
    response = requests.post(
        shape.secure + "/provision",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        verify=str(shape.ca),
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text


def _handshake(shape: Shape, version: ssl.TLSVersion) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(shape.ca)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would offer them: the server refuses
    context.minimum_version = context.maximum_version = version
    port = int(shape.secure.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as connection:
            return str(connection.version())


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1:DeprecationWarning")
def test_tls_1_2_or_newer_only(shape: Shape) -> None:
    for old in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
        with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
            _handshake(shape, old)
    assert _handshake(shape, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"
    assert _handshake(shape, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_no_renegotiation(shape: Shape, maker: Manufacturer) -> None:
    # openssl s_client renegotiates when a line starts with R (TLS 1.2; 1.3 has no renegotiation).
    identity = device(shape.folder, maker, "RENEG-000001")
    port = shape.secure.rsplit(":", 1)[1]
    result = subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-tls1_2",
            "-CAfile",
            str(shape.ca),
            "-cert",
            identity.files[0],
            "-key",
            identity.files[1],
        ],
        input=b"R\n",
        capture_output=True,
        timeout=TIMEOUT,
    )
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert "RENEGOTIATING" in output, output
    assert "no renegotiation" in output, output
