"""`python -m emulator idevids`: a manufacturer CA and IDevIDs as factories ship them, fast."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store

NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def idevids(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-m", "emulator", "idevids", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_hundred_idevids_in_a_few_seconds_each_verifying_to_the_manufacturer_root(tmp_path: Path) -> None:
    started = time.monotonic()
    summary = idevids("--count", "100", "--out", str(tmp_path), "--organization", "Acme")
    assert time.monotonic() - started < 10
    assert summary["devices"] == 100 and (summary["first"], summary["last"]) == ("SN-000001", "SN-000100")

    root = x509.load_pem_x509_certificate((tmp_path / "manufacturer-root.pem").read_bytes())
    registered = x509.load_pem_x509_certificates((tmp_path / "manufacturer-ca.pem").read_bytes())
    assert registered[0] == root and registered[1].issuer == root.subject
    # An IDevID has no SAN: the Web PKI end-entity policy would demand one.
    policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.SubjectAlternativeName, Criticality.AGNOSTIC, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store([root]))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=policy)
        .build_client_verifier()
    )
    with (tmp_path / "devices.csv").open() as listing:
        rows = list(csv.DictReader(listing))
    assert len(rows) == 100
    for row in rows:
        folder = tmp_path / row["folder"]
        chain = x509.load_pem_x509_certificates((folder / "idevid-chain.pem").read_bytes())
        device = chain[0]
        assert device == x509.load_pem_x509_certificate((folder / "idevid.pem").read_bytes())
        assert verifier.verify(device, chain[1:]).chain[-1] == root
        assert device.fingerprint(hashes.SHA256()).hex() == row["sha256"]
        assert device.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)[0].value == row["serial"]
        assert device.not_valid_after_utc == NO_EXPIRY
        assert not any(isinstance(e.value, x509.SubjectAlternativeName) for e in device.extensions)
        key = serialization.load_pem_private_key((folder / "idevid.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        assert key.public_key() == device.public_key()
        assert os.stat(folder / "idevid.key").st_mode & 0o777 == 0o600
    assert os.stat(tmp_path / "manufacturer-root.key").st_mode & 0o777 == 0o600
    assert len({row["sha256"] for row in rows}) == 100


def test_a_second_run_adds_devices_under_the_same_manufacturer(tmp_path: Path) -> None:
    idevids("--count", "2", "--out", str(tmp_path))
    root = (tmp_path / "manufacturer-root.pem").read_bytes()
    summary = idevids("--count", "3", "--out", str(tmp_path), "--start", "3", "--prefix", "LINE2-")
    assert (summary["first"], summary["last"]) == ("LINE2-000003", "LINE2-000005")
    assert (tmp_path / "manufacturer-root.pem").read_bytes() == root
    intermediate = x509.load_pem_x509_certificate((tmp_path / "manufacturer-intermediate.pem").read_bytes())
    device = x509.load_pem_x509_certificate(
        (tmp_path / "devices" / "LINE2-000005" / "idevid.pem").read_bytes()
    )
    assert device.issuer == intermediate.subject
    with (tmp_path / "devices.csv").open() as listing:
        assert [row["serial"] for row in csv.DictReader(listing)] == [
            "SN-000001",
            "SN-000002",
            "LINE2-000003",
            "LINE2-000004",
            "LINE2-000005",
        ]
