"""EST in the production shape (`python -m service.serving.production`: nginx's mutual-TLS listener in front
of gunicorn), with curl and openssl as subprocesses: a device enrolls with the IDevID its maker gave
it (`python -m emulator idevids`), a factory tool with an API key, and the device renews with the
certificate it got; every step as RFC 7030's examples write it."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import requests
from cryptography import x509
from est_client import EstClient
from shell import needs_curl, ok, sh

from emulator import Emulator
from service.callers.devices import groups
from service.store import Store

pytestmark = needs_curl


def make_idevids(directory: Path, count: int, maker: str = "Example Devices") -> Path:
    ok(
        sh(
            f"{sys.executable} -m emulator idevids --count {count} --out {directory} "
            f"--organization '{maker}'",
            directory.parent,
        )
    )
    return directory


def register(database_url: str, ca_pem: Path) -> None:
    """The manufacturer's CA for template demo, SerialNumber from the IDevID's serialNumber."""
    store = Store.open(database_url)
    try:
        groups.register(
            store.device_cas,
            groups.DeviceCaSpec(
                template="demo",
                certificates=ca_pem.read_text(),
                parameters={"SerialNumber": {"from": "subject.serialNumber"}},
                name="walk-through maker",
            ),
            datetime.now(UTC),
        )
    finally:
        store.close()


def enroll_script(est: EstClient, url: str, device: str, *, key: str, out: str) -> str:
    return (
        f"openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {key} "
        f"-subj /CN=device -outform DER | openssl base64 > {out}.b64\n"
        f"curl -sS --fail-with-body --cacert {est.verify} "
        f"--cert {device}/idevid-chain.pem --key {device}/idevid.key "
        f"--data-binary @{out}.b64 -H 'Content-Type: application/pkcs10' {url} "
        f"| openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out {out}.pem"
    )


def test_a_device_enrolls_with_its_idevid_and_renews_with_curl_over_mutual_tls(
    est_production: Callable[..., object], emulator: Emulator, tmp_path: Path
) -> None:
    makers = make_idevids(tmp_path / "idevids", 2)
    # Registered before the service starts; a CA registered later reaches the workers within 2 s.
    database_url = f"sqlite:///{tmp_path / 'provisioner.db'}"
    register(database_url, makers / "manufacturer-ca.pem")
    production = est_production()
    est: EstClient = production.est  # type: ignore[attr-defined]
    url = f"{est.base_url}/.well-known/est/demo/simpleenroll"
    device = makers / "devices" / "SN-000001"
    ok(sh(enroll_script(est, url, str(device), key="op.key", out="op"), tmp_path))
    certificate = x509.load_pem_x509_certificate((tmp_path / "op.pem").read_bytes())
    # The thing's name and serial come from the IDevID (its group), not from the CSR (CN=device).
    assert emulator.registry.describe_thing("demo-SN-000001") is not None
    ok(sh(f"openssl verify -CAfile {emulator.ca_path} op.pem", tmp_path))
    # The same CSR again: the same certificate.
    again = sh(
        f"curl -sS --fail-with-body --cacert {est.verify} --cert {device}/idevid-chain.pem "
        f"--key {device}/idevid.key --data-binary @op.b64 -H 'Content-Type: application/pkcs10' {url} "
        "| openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out again.pem",
        tmp_path,
    )
    ok(again)
    assert x509.load_pem_x509_certificate((tmp_path / "again.pem").read_bytes()) == certificate
    # Another CSR is another request: the group allows one provision per device.
    ok(
        sh(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key "
            "-subj /CN=device -outform DER | openssl base64 > other.b64",
            tmp_path,
        )
    )
    second = sh(
        f"curl -sS --cacert {est.verify} --cert {device}/idevid-chain.pem --key {device}/idevid.key "
        f"-o second.txt -w '%{{http_code}}' --data-binary @other.b64 "
        f"-H 'Content-Type: application/pkcs10' {url}",
        tmp_path,
    )
    assert ok(second) == "409" and "already provisioned" in (tmp_path / "second.txt").read_text()
    # The audit trail names the device certificate that asked.
    records = requests.get(
        f"{production.plain_url}/admin/registrations",  # type: ignore[attr-defined]
        headers={"Authorization": f"Bearer {est.key}"},
        timeout=30,
    ).json()["items"]
    fingerprint = (makers / "devices.csv").read_text().splitlines()[1].split(",")[1]
    assert {r["deviceFingerprint"] for r in records} == {fingerprint}
    assert sorted(r["outcome"] for r in records) == ["provisioned", "refused", "replayed"]
    # The device renews with the operational certificate it got: a new key, the same subject.
    ok(
        sh(
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out next.key\n"
            "openssl x509 -x509toreq -in op.pem -key next.key | openssl req -outform DER "
            "| openssl base64 > next.b64\n"
            f"curl -sS --fail-with-body --cacert {est.verify} --cert op.pem --key op.key "
            "--data-binary @next.b64 -H 'Content-Type: application/pkcs10' "
            f"{est.base_url}/.well-known/est/demo/simplereenroll "
            "| openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out next.pem\n"
            "diff <(openssl x509 -in next.pem -noout -pubkey) <(openssl pkey -in next.key -pubout)",
            tmp_path,
        )
    )
    described = emulator.registry.describe_thing("demo-SN-000001")
    assert described is not None and len(described["principals"]) == 2


def test_device_refusals_over_mutual_tls_are_precise_and_mint_nothing(
    est_production: Callable[..., object], emulator: Emulator, tmp_path: Path
) -> None:
    makers = make_idevids(tmp_path / "idevids", 1)
    strangers = make_idevids(tmp_path / "strangers", 1, maker="Nobody Registered")
    register(f"sqlite:///{tmp_path / 'provisioner.db'}", makers / "manufacturer-ca.pem")
    production = est_production()
    est: EstClient = production.est  # type: ignore[attr-defined]
    url = f"{est.base_url}/.well-known/est/demo/simpleenroll"
    device = makers / "devices" / "SN-000001"
    curl = (
        f"curl -sS --cacert {est.verify} -o body.txt -w '%{{http_code}}' "
        "-H 'Content-Type: application/pkcs10' --data-binary"
    )
    device_tls = f"--cert {device}/idevid-chain.pem --key {device}/idevid.key"
    # A maker nobody registered.
    stranger = strangers / "devices" / "SN-000001"
    ok(
        sh(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
            "-subj /CN=d -outform DER | openssl base64 > req.b64",
            tmp_path,
        )
    )
    status = ok(
        sh(
            f"{curl} @req.b64 --cert {stranger}/idevid-chain.pem --key {stranger}/idevid.key {url}",
            tmp_path,
        )
    )
    assert (
        status == "403"
        and "No registered device CA issued this certificate" in (tmp_path / "body.txt").read_text()
    )
    # A CSR carrying the IDevID's own key: the operational key must be new.
    ok(
        sh(
            f"openssl req -new -key {device}/idevid.key -subj /CN=d -outform DER | openssl base64 > same.b64",
            tmp_path,
        )
    )
    status = ok(
        sh(
            f"{curl} @same.b64 {device_tls} {url}",
            tmp_path,
        )
    )
    assert status == "422" and "new key" in (tmp_path / "body.txt").read_text()
    # A label its CA is not registered for.
    other = url.replace("/demo/", "/other/")
    status = ok(
        sh(
            f"{curl} @req.b64 {device_tls} {other}",
            tmp_path,
        )
    )
    assert status == "403", (tmp_path / "body.txt").read_text()
    assert emulator.registry.list_things() == []
