"""The emulator's PKI: its CA, the TLS server and claim certificates, device certificates and keys.

AWS IoT signs device certificates with an Amazon CA; the emulator signs them with its own EC P-256
CA, created once in the data directory and reused on later starts so that clients keep trusting it.
Only RSA-2048 key generation costs anything (about 40 ms, with a tail past 100 ms,
measured on 2 cores), so keys for CreateKeysAndCertificate come from a `KeyPool` filled by a background thread
and are never generated on the asyncio event loop.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, PublicKeyAlgorithmOID

from emulator.errors import ConfigError, InvalidRequest
from emulator.security.keys import KeyPool, PrivateKey, generate_key

__all__ = ["CertificateAuthority", "KeyPool", "PrivateKey", "generate_key"]


CA_COMMON_NAME = "Emulated AWS IoT CA"
# AWS IoT's generated certificates carry this subject (as AWS IoT's CreateKeysAndCertificate issues them).
DEVICE_COMMON_NAME = "AWS IoT Certificate"
CLAIM_COMMON_NAME = "claim"
CA_LIFETIME = dt.timedelta(days=3652)
# AWS device certificates are valid until the last date UTCTime can express (field: every
# certificate from CreateKeysAndCertificate/CreateCertificateFromCsr ends 2049-12-31 23:59:59 UTC).
DEVICE_NOT_AFTER = dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)
# Backdating absorbs clock skew between the emulator and its clients.
BACKDATE = dt.timedelta(hours=1)
MAX_CSR_BYTES = 16 * 1024
# AWS IoT's CreateCertificateFromCsr API reference: the CSR's key must be RSA of at least 2048
# bits or ECC on NIST P-256, P-384 or P-521.
MIN_RSA_BITS = 2048
SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
ACCEPTED_KEYS = "AWS IoT accepts RSA of at least 2048 bits or EC on NIST P-256, P-384 or P-521"


def certificate_id(cert: x509.Certificate) -> str:
    """The AWS certificate ID: the SHA-256 of the DER encoding, in lower-case hex."""
    return certificate_id_from_der(cert.public_bytes(serialization.Encoding.DER))


def certificate_id_from_der(der: bytes) -> str:
    return hashlib.sha256(der).hexdigest()


def pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def private_key_pem(key: PrivateKey) -> str:
    """Unencrypted PEM: PKCS#1 `RSA PRIVATE KEY` as AWS returns it, or SEC1 `EC PRIVATE KEY`."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode("ascii")


def load_csr(text: str) -> x509.CertificateSigningRequest:
    """Parse and check the `certificateSigningRequest` of CreateCertificateFromCsr.

    Raises InvalidRequest naming the first problem found.
    """
    if not isinstance(text, str):
        raise InvalidRequest("certificateSigningRequest must be a string")
    data = text.encode("utf-8")
    # Bounded before parsing: the parser and signature check should not see arbitrary input.
    if len(data) > MAX_CSR_BYTES:
        raise InvalidRequest(
            f"certificateSigningRequest is {len(data)} bytes; at most {MAX_CSR_BYTES} allowed"
        )
    try:
        csr = x509.load_pem_x509_csr(data)
        # On the CSR since cryptography 44, though its type stub names it only on Certificate.
        algorithm = csr.public_key_algorithm_oid  # type: ignore[attr-defined]
        family = _KEY_FAMILIES.get(algorithm)
        if family not in ("RSA", "EC"):
            name = family or f"of the algorithm {algorithm.dotted_string}"
            raise InvalidRequest(f"CSR key is {name}, which is not supported; {ACCEPTED_KEYS}")
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidRequest("certificateSigningRequest is not a PEM certificate signing request") from exc
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size < MIN_RSA_BITS:
            raise InvalidRequest(
                f"CSR key is RSA {public_key.key_size} bits, which is not supported; {ACCEPTED_KEYS}"
            )
    elif isinstance(public_key, ec.EllipticCurvePublicKey):
        if public_key.curve.name not in SUPPORTED_CURVES:
            raise InvalidRequest(
                f"CSR key is EC on curve {public_key.curve.name}, which is not supported; {ACCEPTED_KEYS}"
            )
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidRequest("CSR signature is invalid") from exc
    if not valid:
        raise InvalidRequest("CSR signature is invalid")
    return csr


# A CSR's key family, read from its SubjectPublicKeyInfo algorithm before the key is loaded: loading
# or verifying a DSA key warns (deprecated since cryptography 51), and a refused key needs only a name.
_KEY_FAMILIES = {
    PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5: "RSA",
    PublicKeyAlgorithmOID.RSASSA_PSS: "RSA",
    PublicKeyAlgorithmOID.EC_PUBLIC_KEY: "EC",
    PublicKeyAlgorithmOID.DSA: "DSA",
    PublicKeyAlgorithmOID.ED25519: "Ed25519",
    PublicKeyAlgorithmOID.ED448: "Ed448",
    PublicKeyAlgorithmOID.X25519: "X25519",
    PublicKeyAlgorithmOID.X448: "X448",
}


@dataclass(frozen=True)
class _Pair:
    cert: x509.Certificate
    key: PrivateKey


class CertificateAuthority:
    """The emulator's CA plus the server and claim credentials it signed, stored in `data_dir`."""

    def __init__(self, data_dir: Path, ca: _Pair, server: _Pair, claim: _Pair) -> None:
        self.data_dir = data_dir
        self.ca_certificate = ca.cert
        self._ca_key = ca.key
        self.server_certificate = server.cert
        self.claim_certificate = claim.cert
        self.claim_certificate_id = certificate_id(claim.cert)
        self.ca_path = data_dir / "ca.pem"
        self.ca_key_path = data_dir / "ca.key"
        self.server_cert_path = data_dir / "server.pem"
        self.server_key_path = data_dir / "server.key"
        self.claim_cert_path = data_dir / "claim.pem"
        self.claim_key_path = data_dir / "claim.key"

    @property
    def ca_pem(self) -> str:
        return pem(self.ca_certificate)

    @classmethod
    def load_or_create(cls, data_dir: Path) -> CertificateAuthority:
        """Load the CA, server and claim credentials from `data_dir`, creating any that are missing.

        A new CA invalidates the old server and claim certificates, so they are then recreated too.
        A certificate without its key (or the reverse) is a ConfigError rather than a silent repair.
        """
        data_dir = Path(data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        ca = _load_pair(data_dir, "ca")
        fresh_ca = ca is None
        if ca is None:
            ca = _make_ca()
            _save_pair(data_dir, "ca", ca)
        server = None if fresh_ca else _load_pair(data_dir, "server", issuer=ca)
        if server is None:
            server = _issue_pair(ca, "localhost", _server_extensions())
            _save_pair(data_dir, "server", server)
        claim = None if fresh_ca else _load_pair(data_dir, "claim", issuer=ca)
        if claim is None:
            claim = _issue_pair(ca, CLAIM_COMMON_NAME, _client_extensions())
            _save_pair(data_dir, "claim", claim)
        return cls(data_dir, ca, server, claim)

    def issue(
        self, public_key: CertificatePublicKeyTypes, subject_cn: str = DEVICE_COMMON_NAME
    ) -> x509.Certificate:
        """A device certificate for `public_key`, as CreateKeysAndCertificate/FromCsr return.

        Takes any key type `csr.public_key()` is typed as; `load_csr` has already limited it to
        RSA >= 2048 and EC P-256/P-384/P-521.
        """
        now = dt.datetime.now(dt.UTC)
        return _sign(
            _Pair(self.ca_certificate, self._ca_key),
            public_key,
            subject_cn,
            not_before=now - BACKDATE,
            not_after=DEVICE_NOT_AFTER,
            extensions=_client_extensions(),
        )


# --- files and certificate building -------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca() -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(CA_COMMON_NAME))
        .issuer_name(_name(CA_COMMON_NAME))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + CA_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(key_usage(cert_sign=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )
    return _Pair(cert, key)


def key_usage(
    *, digital_signature: bool = True, key_encipherment: bool = False, cert_sign: bool = False
) -> x509.KeyUsage:
    """keyUsage with only these bits (a CA's `cert_sign` also signs CRLs)."""
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=key_encipherment,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _client_extensions() -> list[x509.ExtensionType]:
    return [x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH])]


def _server_extensions() -> list[x509.ExtensionType]:
    return [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
        x509.SubjectAlternativeName(
            [
                x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                x509.IPAddress(ipaddress.ip_address("::1")),
            ]
        ),
    ]


def _issue_pair(ca: _Pair, common_name: str, extensions: list[x509.ExtensionType]) -> _Pair:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = _sign(
        ca,
        key.public_key(),
        common_name,
        not_before=now - BACKDATE,
        not_after=ca.cert.not_valid_after_utc,
        extensions=extensions,
    )
    return _Pair(cert, key)


def _sign(
    ca: _Pair,
    public_key: CertificatePublicKeyTypes,
    common_name: str,
    *,
    not_before: dt.datetime,
    not_after: dt.datetime,
    extensions: list[x509.ExtensionType],
) -> x509.Certificate:
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        # keyEncipherment only makes sense for RSA (TLS RSA key transport); EC keys only sign.
        .add_extension(key_usage(key_encipherment=isinstance(public_key, rsa.RSAPublicKey)), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
    )
    for extension in extensions:
        builder = builder.add_extension(extension, critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def _load_pair(data_dir: Path, stem: str, issuer: _Pair | None = None) -> _Pair | None:
    cert_path, key_path = data_dir / f"{stem}.pem", data_dir / f"{stem}.key"
    present = [p.exists() for p in (cert_path, key_path)]
    if not any(present):
        return None
    if not all(present):
        missing = cert_path if not present[0] else key_path
        raise ConfigError(f"{missing} is missing but its pair exists; restore it or delete both")
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"cannot load {cert_path} / {key_path}: {exc}") from exc
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{key_path} is neither an RSA nor an EC key")
    if key.public_key() != cert.public_key():
        raise ConfigError(f"{key_path} does not match {cert_path}")
    if issuer is not None:
        try:
            cert.verify_directly_issued_by(issuer.cert)
        except (ValueError, TypeError, InvalidSignature) as exc:
            raise ConfigError(f"{cert_path} is not signed by {data_dir / 'ca.pem'}") from exc
    return _Pair(cert, key)


def _save_pair(data_dir: Path, stem: str, pair: _Pair) -> None:
    key_pem = pair.key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(data_dir / f"{stem}.key", key_pem, mode=0o600)
    _write(data_dir / f"{stem}.pem", pair.cert.public_bytes(serialization.Encoding.PEM), mode=0o644)


def _write(path: Path, data: bytes, *, mode: int) -> None:
    # Written beside the target, then renamed: a crash never leaves a half-written file, and the
    # key is 0600 from its first byte rather than after a chmod.
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
