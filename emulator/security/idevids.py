"""Test identities as factories ship them: a manufacturer CA (root and intermediate) and IDevIDs.

An IDevID (IEEE 802.1AR) is the identity a device leaves the chip or contract manufacturer with:
an ECDSA P-256 key made in its secure element (ATECC608, SE050, OPTIGA Trust M; TPMs hold RSA
2048 or P-256), the device serial in the subject's serialNumber, no subjectAlternativeName, and
notAfter 99991231235959Z ("no well-defined expiration", as 802.1AR and RFC 5280 write it).

    python -m emulator idevids --count 100 --out DIR [--prefix SN-] [--start 1] [--organization NAME]

writes into DIR

    manufacturer-ca.pem             the root, then the intermediate: the PEM to register as a device CA
    manufacturer-root.pem / .key, manufacturer-intermediate.pem / .key
    devices/<serial>/idevid.pem     the device certificate
    devices/<serial>/idevid.key     its private key (0600; on a real device it never leaves the chip)
    devices/<serial>/idevid-chain.pem   device certificate and intermediate: what a device presents
    devices.csv                     serial, SHA-256 fingerprint of the certificate, folder

A DIR that already holds a manufacturer keeps it (more devices under the same CA). Keys are
written unencrypted: these are test identities.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from emulator.security import pki
from emulator.security.keys import PrivateKey

# 802.1AR: an IDevID (and its CAs) "should" carry this notAfter, meaning no expiry.
NO_EXPIRY = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
BACKDATE = dt.timedelta(hours=1)
DEFAULT_ORGANIZATION = "Example Devices Ltd"


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


@dataclass
class Issuer:
    """A CA: its key, its certificate and the certificates above it (nearest first)."""

    key: PrivateKey
    certificate: x509.Certificate
    parents: list[x509.Certificate] = field(default_factory=list)

    @classmethod
    def root(
        cls, common_name: str, organization: str = DEFAULT_ORGANIZATION, *, path_length: int | None = 1
    ) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name(common_name, organization)
        builder = _ca_builder(name, name, key, key, path_length)
        return cls(key, builder.sign(key, hashes.SHA256()))

    def issue_ca(
        self,
        common_name: str,
        organization: str = DEFAULT_ORGANIZATION,
        *,
        path_length: int | None = 0,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime = NO_EXPIRY,
    ) -> Issuer:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = _ca_builder(
            _name(common_name, organization),
            self.certificate.subject,
            key,
            self.key,
            path_length,
            not_before=not_before,
            not_after=not_after,
        )
        return Issuer(key, builder.sign(self.key, hashes.SHA256()), [self.certificate, *self.parents])

    def issue_idevid(
        self,
        serial: str,
        *,
        key: PrivateKey | None = None,
        organization: str | None = None,
        common_name: str | None = None,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime = NO_EXPIRY,
        extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
        key_usage: bool = True,
    ) -> tuple[PrivateKey, x509.Certificate]:
        """A device certificate: serialNumber (and CN) = serial, no SAN, keyUsage digitalSignature.
        `extensions` adds (extension, critical) pairs: an EKU, a SAN, what a test needs."""
        key = key if key is not None else ec.generate_private_key(ec.SECP256R1())
        organization = organization or _organization(self.certificate)
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                x509.NameAttribute(NameOID.COMMON_NAME, common_name or serial),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, serial),
            ]
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or dt.datetime.now(dt.UTC) - BACKDATE)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )
        if key_usage:
            builder = builder.add_extension(pki.key_usage(), critical=True)
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return key, builder.sign(self.key, hashes.SHA256())

    def chain_pem(self) -> bytes:
        """This CA and those above it, nearest first."""
        return b"".join(_pem(c) for c in [self.certificate, *self.parents])

    def crl(
        self, revoked: Sequence[x509.Certificate], *, next_update: dt.timedelta = dt.timedelta(days=30)
    ) -> bytes:
        """A CRL (PEM) of this CA listing these certificates."""
        now = dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.certificate.subject)
            .last_update(now - BACKDATE)
            .next_update(now + next_update)
        )
        for certificate in revoked:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(certificate.serial_number)
                .revocation_date(now - BACKDATE)
                .build()
            )
        return builder.sign(self.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


@dataclass
class Manufacturer:
    """A maker's PKI as devices come with it: a root and the intermediate that signs devices."""

    root: Issuer
    intermediate: Issuer

    @classmethod
    def create(cls, organization: str = DEFAULT_ORGANIZATION) -> Manufacturer:
        root = Issuer.root(f"{organization} Root CA", organization)
        return cls(root, root.issue_ca(f"{organization} Device CA", organization))

    def issue(self, serial: str, **options: object) -> tuple[PrivateKey, x509.Certificate]:
        return self.intermediate.issue_idevid(serial, **options)  # type: ignore[arg-type]

    def ca_pem(self) -> bytes:
        """What an operator registers: the root first, then the intermediate (so a device that
        presents only its own certificate is still verified)."""
        return _pem(self.root.certificate) + _pem(self.intermediate.certificate)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "manufacturer-ca.pem").write_bytes(self.ca_pem())
        for label, issuer in (("root", self.root), ("intermediate", self.intermediate)):
            (folder / f"manufacturer-{label}.pem").write_bytes(_pem(issuer.certificate))
            _write_private(folder / f"manufacturer-{label}.key", _key_pem(issuer.key))

    @classmethod
    def load(cls, folder: Path) -> Manufacturer:
        def issuer(label: str, parents: list[x509.Certificate]) -> Issuer:
            key = serialization.load_pem_private_key(
                (folder / f"manufacturer-{label}.key").read_bytes(), None
            )
            certificate = x509.load_pem_x509_certificate((folder / f"manufacturer-{label}.pem").read_bytes())
            return Issuer(key, certificate, parents)  # type: ignore[arg-type]

        root = issuer("root", [])
        return cls(root, issuer("intermediate", [root.certificate]))


def _name(common_name: str, organization: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _organization(certificate: x509.Certificate) -> str:
    found = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    return str(found[0].value) if found else DEFAULT_ORGANIZATION


def _ca_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: PrivateKey,
    issuer_key: PrivateKey,
    path_length: int | None,
    *,
    not_before: dt.datetime | None = None,
    not_after: dt.datetime = NO_EXPIRY,
) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or dt.datetime.now(dt.UTC) - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(pki.key_usage(digital_signature=False, cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if key is not issuer_key:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    return builder


def _write_private(path: Path, data: bytes) -> None:
    # Created 0600 from the start (never readable by others, not even for a moment).
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def write_devices(
    out: Path,
    count: int,
    *,
    prefix: str = "SN-",
    start: int = 1,
    organization: str = DEFAULT_ORGANIZATION,
) -> dict[str, object]:
    """Make (or reuse) the manufacturer in `out` and `count` IDevIDs under it; a summary."""
    out.mkdir(parents=True, exist_ok=True)
    if (out / "manufacturer-intermediate.key").exists():
        manufacturer = Manufacturer.load(out)
    else:
        manufacturer = Manufacturer.create(organization)
        manufacturer.save(out)
    intermediate_pem = _pem(manufacturer.intermediate.certificate)
    devices = out / "devices"
    rows = []
    for number in range(start, start + count):
        serial = f"{prefix}{number:06d}"
        key, certificate = manufacturer.issue(serial)
        folder = devices / serial
        folder.mkdir(parents=True, exist_ok=True)
        certificate_pem = _pem(certificate)
        (folder / "idevid.pem").write_bytes(certificate_pem)
        (folder / "idevid-chain.pem").write_bytes(certificate_pem + intermediate_pem)
        _write_private(folder / "idevid.key", _key_pem(key))
        fingerprint = certificate.fingerprint(hashes.SHA256()).hex()
        rows.append((serial, fingerprint, str(folder.relative_to(out))))
    listing = out / "devices.csv"
    new = not listing.exists()
    with listing.open("a", newline="") as file:
        writer = csv.writer(file)
        if new:
            writer.writerow(["serial", "sha256", "folder"])
        writer.writerows(rows)
    return {
        "ca": str(out / "manufacturer-ca.pem"),
        "devices": len(rows),
        "first": rows[0][0] if rows else None,
        "last": rows[-1][0] if rows else None,
        "list": str(listing),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m emulator idevids",
        description="Make a manufacturer CA (root + intermediate) and IDevIDs (P-256, serialNumber in "
        "the subject, no SAN, notAfter 99991231235959Z) for tests and walk-throughs.",
    )
    parser.add_argument("--count", type=int, default=10, help="how many devices (default 10)")
    parser.add_argument("--out", type=Path, required=True, help="folder to write into")
    parser.add_argument("--prefix", default="SN-", help="serials are PREFIX + a 6-digit number")
    parser.add_argument("--start", type=int, default=1, help="first serial number (default 1)")
    parser.add_argument("--organization", default=DEFAULT_ORGANIZATION, help="the manufacturer's name")
    args = parser.parse_args(argv)
    if not 0 <= args.count <= 1_000_000:
        parser.error("--count is from 0 to 1000000")
    if args.start < 0:
        parser.error("--start is 0 or more")
    print(
        json.dumps(
            write_devices(
                args.out, args.count, prefix=args.prefix, start=args.start, organization=args.organization
            )
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
