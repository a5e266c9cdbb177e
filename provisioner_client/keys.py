"""Device keys and CSRs, made on the factory PC: the private key is never sent anywhere."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


def make_key(*, use_rsa: bool = False) -> PrivateKey:
    """EC P-256 by default (small, fast, accepted by AWS IoT); RSA 2048 for devices that need it."""
    if use_rsa:
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the device reads it at boot (protect it with the file's mode)."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def load_key(pem: bytes) -> PrivateKey:
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError("the stored private key is neither EC nor RSA")
    return key


def make_csr(key: PrivateKey, common_name: str = "device") -> bytes:
    """A PEM CSR signed by `key`. AWS IoT takes only the public key from it: the subject is a label."""
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64] or "device")]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.PEM)


def certificate_matches_key(certificate_pem: str, key: PrivateKey) -> bool:
    certificate = x509.load_pem_x509_certificate(certificate_pem.encode("ascii"))
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return certificate.public_key().public_bytes(*spki) == key.public_key().public_bytes(*spki)
