"""The mutual-TLS listener (docs/attestation.md): nginx, in both shapes, in front of gunicorn.

nginx asks every client for a certificate and checks none (`ssl_verify_client optional_no_ca`):
the service checks it against the device CAs registered in its store, so a CA registered at run
time is trusted at once, with no reload and no restart. Python's `ssl` could not do that: with
CERT_OPTIONAL it fails the handshake of any certificate its context's CA store does not already
trust, and it has no verify callback to leave the check to the service. The TLS handshake itself
still proves the client holds the certificate's key (its CertificateVerify).

Only TLS 1.2 and 1.3; nginx never renegotiates (it refuses a client's renegotiation, and TLS 1.3
has none). The certificate nginx got is passed on in `X-Client-Certificate` (URL-encoded PEM),
set on every request, so a client's own header of that name never reaches the service
(service.callers.presented believes it only from nginx).

The server's certificate is PROVISIONER_TLS_CERT / PROVISIONER_TLS_KEY; in local mode, when none
is given, one for localhost is made once under the emulator's data directory, signed by a CA of
its own there (`tls/ca.pem`: what a client trusts, e.g. `curl --cacert`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from service.callers.presented import CERTIFICATE_HEADER
from service.config import Settings

LOCAL_NAMES = ("localhost",)
LOCAL_ADDRESSES = ("127.0.0.1", "::1")
LOCAL_DAYS = 825  # the longest a TLS client of today accepts for a server certificate


@dataclass(frozen=True)
class TlsListener:
    """Where nginx listens with TLS, and its server certificate chain and key."""

    bind: str
    certificate: Path
    key: Path
    ca: Path | None = None  # local mode's CA, for clients to trust

    def nginx_lines(self) -> str:
        """The lines of nginx's server block for this listener."""
        return "\n        ".join(
            [
                f"listen {self.bind} ssl;",
                f"ssl_certificate {self.certificate};",
                f"ssl_certificate_key {self.key};",
                "ssl_protocols TLSv1.2 TLSv1.3;",
                "ssl_session_cache shared:tls:1m;",
                # Ask for a client certificate, require none, check none: the service does.
                "ssl_verify_client optional_no_ca;",
                # nginx still answers 495 (as 400) for a certificate that fails its own checks
                # other than an unknown issuer: the service is to say why, so it gets those too.
                "error_page 495 = @device_certificate;",
            ]
        )


def listener(settings: Settings) -> TlsListener | None:
    """The mutual-TLS listener these settings ask for (PROVISIONER_TLS_BIND), or None."""
    if settings.tls_bind is None:
        return None
    folder = (settings.emulator_data_dir / "tls").resolve()
    if settings.tls_cert is not None and settings.tls_key is not None:
        certificate, key = settings.tls_cert.resolve(), settings.tls_key.resolve()
        # Local mode's own files (service.serving.local_mode hands them to the workers): its CA too.
        ca = folder / "ca.pem" if certificate == folder / "server.pem" else None
        return TlsListener(settings.tls_bind, certificate, key, ca)
    # Settings checks that outside local mode both files are given.
    return local_listener(settings.tls_bind, folder)


def local_listener(bind: str, folder: Path) -> TlsListener:
    """A certificate for localhost made once in `folder` (ca.pem, server.pem, server.key)."""
    ca_path, certificate_path, key_path = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    if not (ca_path.exists() and certificate_path.exists() and key_path.exists()):
        folder.mkdir(parents=True, exist_ok=True)
        ca_pem, certificate_pem, key_pem = _local_files()
        _write(key_path, key_pem, 0o600)
        _write(certificate_path, certificate_pem, 0o644)
        _write(ca_path, ca_pem, 0o644)
    return TlsListener(bind, certificate_path, key_path, ca_path)


def announcement(secure: TlsListener) -> str:
    """What a launcher prints: where mutual TLS listens and what a client trusts."""
    trust = f" (clients trust {secure.ca})" if secure.ca is not None else ""
    return f"mutual TLS: https://{secure.bind}{trust}; device certificates are checked by the service"


def header_line() -> str:
    """nginx's line that sets the header on every request: empty (so not sent) without a client
    certificate, which drops a client's own header of that name."""
    return f"proxy_set_header {CERTIFICATE_HEADER} $ssl_client_escaped_cert;"


def _local_files() -> tuple[bytes, bytes, bytes]:
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "iot-provisioner local mode CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in LOCAL_NAMES]
    names += [x509.IPAddress(ipaddress.ip_address(address)) for address in LOCAL_ADDRESSES]
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=LOCAL_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    # The server's chain: its certificate, then the CA (clients that trust the CA need no more).
    return ca.public_bytes(pem), server.public_bytes(pem) + ca.public_bytes(pem), key_pem


def _write(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
