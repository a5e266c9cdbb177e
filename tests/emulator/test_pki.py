"""The emulator's CA, device certificates, CSR checks and key pool."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import ssl
import stat
import threading
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from repository import TEST_DATA

from emulator.errors import ConfigError, InvalidRequest
from emulator.security.pki import (
    CertificateAuthority,
    KeyPool,
    certificate_id,
    certificate_id_from_der,
    load_csr,
    pem,
    private_key_pem,
)

FILES = ("ca.pem", "ca.key", "server.pem", "server.key", "claim.pem", "claim.key")


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority.load_or_create(tmp_path_factory.mktemp("pki"))


def make_csr(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey, cn: str = "device-1"
) -> str:
    # Ed25519 signs without a separate hash algorithm.
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def handshake(client_ctx: ssl.SSLContext, server_ctx: ssl.SSLContext) -> ssl.SSLObject:
    """A TLS handshake over memory BIOs; returns the server side once both sides are done."""
    c_in, c_out, s_in, s_out = (ssl.MemoryBIO() for _ in range(4))
    client = client_ctx.wrap_bio(c_in, c_out, server_hostname="localhost")
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(20):
        for name, side in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3: the server checks the client certificate after the client thinks it is done.
            server.write(b"x")
            c_in.write(s_out.read())
            assert client.read(1) == b"x"
            return server
    raise AssertionError("TLS handshake did not complete")


def test_load_or_create_creates_the_files_once_and_reuses_them(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path)
    contents = {name: (tmp_path / name).read_bytes() for name in FILES}
    for name in FILES:
        mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
        if name.endswith(".key"):
            assert mode == 0o600, name

    second = CertificateAuthority.load_or_create(tmp_path)

    assert {name: (tmp_path / name).read_bytes() for name in FILES} == contents
    assert second.claim_certificate_id == first.claim_certificate_id
    assert second.ca_path == tmp_path / "ca.pem"
    assert second.claim_key_path == tmp_path / "claim.key"
    assert second.server_cert_path.read_bytes() == contents["server.pem"]


def test_load_or_create_recreates_server_and_claim_for_a_new_ca(tmp_path: Path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "ca.pem").unlink()
    (tmp_path / "ca.key").unlink()

    second = CertificateAuthority.load_or_create(tmp_path)

    assert second.claim_certificate_id != first.claim_certificate_id
    server = x509.load_pem_x509_certificate(second.server_cert_path.read_bytes())
    server.verify_directly_issued_by(second.ca_certificate)


def test_load_or_create_refuses_a_certificate_without_its_key(tmp_path: Path) -> None:
    CertificateAuthority.load_or_create(tmp_path)
    (tmp_path / "claim.key").unlink()

    with pytest.raises(ConfigError, match="claim.key is missing"):
        CertificateAuthority.load_or_create(tmp_path)


def test_ca_is_an_ec_p256_ca_valid_ten_years(ca: CertificateAuthority) -> None:
    cert = ca.ca_certificate
    assert cert.subject.rfc4514_string() == "CN=Emulated AWS IoT CA"
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert dt.timedelta(days=3650) < lifetime < dt.timedelta(days=3660)


def test_server_certificate_names_localhost_and_both_loopback_addresses(
    ca: CertificateAuthority,
) -> None:
    server = x509.load_pem_x509_certificate(ca.server_cert_path.read_bytes())
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value

    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    server.verify_directly_issued_by(ca.ca_certificate)


def test_claim_certificate_is_cn_claim_signed_by_the_ca(ca: CertificateAuthority) -> None:
    claim = x509.load_pem_x509_certificate(ca.claim_cert_path.read_bytes())

    assert claim.subject.rfc4514_string() == "CN=claim"
    claim.verify_directly_issued_by(ca.ca_certificate)
    assert (
        ca.claim_certificate_id == hashlib.sha256(claim.public_bytes(serialization.Encoding.DER)).hexdigest()
    )


def test_python_tls_accepts_the_server_and_a_device_certificate(
    ca: CertificateAuthority, tmp_path: Path
) -> None:
    # Hostname checks and RFC 5280 strictness (the default from Python 3.13) on both sides.
    device_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    device_cert = ca.issue(device_key.public_key())
    (tmp_path / "device.pem").write_text(pem(device_cert))
    (tmp_path / "device.key").write_text(private_key_pem(device_key))
    client_ctx = ssl.create_default_context(cafile=str(ca.ca_path))
    client_ctx.load_cert_chain(tmp_path / "device.pem", tmp_path / "device.key")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(ca.ca_path))
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    server_ctx.load_cert_chain(ca.server_cert_path, ca.server_key_path)
    for ctx in (client_ctx, server_ctx):
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT

    server = handshake(client_ctx, server_ctx)

    peer = server.getpeercert(binary_form=True)
    assert peer is not None
    assert certificate_id_from_der(peer) == certificate_id(device_cert)


def test_issued_certificate_carries_the_key_and_is_signed_by_the_ca(
    ca: CertificateAuthority,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    before = dt.datetime.now(dt.UTC)

    cert = ca.issue(key.public_key())

    assert cert.public_key() == key.public_key()
    assert cert.subject.rfc4514_string() == "CN=AWS IoT Certificate"
    assert cert.issuer == ca.ca_certificate.subject
    ca_public_key = ca.ca_certificate.public_key()
    assert isinstance(ca_public_key, ec.EllipticCurvePublicKey)
    assert cert.signature_hash_algorithm is not None
    ca_public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert cert.not_valid_before_utc <= before - dt.timedelta(minutes=59)
    assert cert.not_valid_after_utc == dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def test_issued_certificates_get_distinct_serials(ca: CertificateAuthority) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    assert ca.issue(key.public_key()).serial_number != ca.issue(key.public_key()).serial_number


def test_certificate_id_is_the_sha256_of_the_der(ca: CertificateAuthority) -> None:
    cert = ca.issue(ec.generate_private_key(ec.SECP256R1()).public_key(), subject_cn="x")
    der = cert.public_bytes(serialization.Encoding.DER)

    assert certificate_id(cert) == hashlib.sha256(der).hexdigest()
    assert certificate_id_from_der(der) == certificate_id(cert)
    assert len(certificate_id(cert)) == 64


@pytest.mark.parametrize(
    "key",
    [
        pytest.param(rsa.generate_private_key(public_exponent=65537, key_size=2048), id="rsa2048"),
        pytest.param(ec.generate_private_key(ec.SECP256R1()), id="p256"),
        pytest.param(ec.generate_private_key(ec.SECP384R1()), id="p384"),
        pytest.param(ec.generate_private_key(ec.SECP521R1()), id="p521"),
    ],
)
def test_load_csr_accepts_supported_keys(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, ca: CertificateAuthority
) -> None:
    csr = load_csr(make_csr(key))

    assert csr.public_key() == key.public_key()
    assert ca.issue(csr.public_key()).public_key() == key.public_key()


def test_load_csr_rejects_garbage() -> None:
    with pytest.raises(InvalidRequest, match="not a PEM certificate signing request"):
        load_csr("hello")


def test_load_csr_rejects_a_certificate(ca: CertificateAuthority) -> None:
    with pytest.raises(InvalidRequest, match="not a PEM certificate signing request"):
        load_csr(ca.ca_pem)


def test_load_csr_rejects_der() -> None:
    pem_text = make_csr(ec.generate_private_key(ec.SECP256R1()))
    der = x509.load_pem_x509_csr(pem_text.encode()).public_bytes(serialization.Encoding.DER)

    with pytest.raises(InvalidRequest, match="not a PEM certificate signing request"):
        load_csr(der.decode("latin-1"))


def test_load_csr_rejects_rsa_1024() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)

    with pytest.raises(InvalidRequest) as caught:
        load_csr(make_csr(key))
    assert caught.value.message == (
        "CSR key is RSA 1024 bits, which is not supported; AWS IoT accepts RSA of at least 2048 "
        "bits or EC on NIST P-256, P-384 or P-521"
    )
    assert caught.value.payload()["statusCode"] == 400


def test_load_csr_rejects_secp256k1() -> None:
    key = ec.generate_private_key(ec.SECP256K1())

    with pytest.raises(InvalidRequest) as caught:
        load_csr(make_csr(key))
    assert caught.value.message.startswith(
        "CSR key is EC on curve secp256k1, which is not supported; AWS IoT accepts"
    )


def test_load_csr_rejects_ed25519_naming_the_key_type() -> None:
    key = ed25519.Ed25519PrivateKey.generate()

    with pytest.raises(InvalidRequest) as caught:
        load_csr(make_csr(key))
    assert caught.value.message.startswith("CSR key is Ed25519, which is not supported; ")


def test_load_csr_rejects_dsa_naming_the_key_type_without_a_deprecation_warning() -> None:
    # Made once with openssl: cryptography deprecates DSA, and filterwarnings = error would catch
    # any use of its DSA classes on this path.
    dsa_csr = (TEST_DATA / "dsa-2048.csr").read_text()

    with pytest.raises(InvalidRequest) as caught:
        load_csr(dsa_csr)
    assert caught.value.message.startswith("CSR key is DSA, which is not supported; ")


def test_load_csr_rejects_a_tampered_signature() -> None:
    pem_text = make_csr(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    der = x509.load_pem_x509_csr(pem_text.encode()).public_bytes(serialization.Encoding.DER)
    # Same length, so the structure still parses; the signed subject no longer matches.
    tampered = x509.load_der_x509_csr(der.replace(b"device-1", b"device-2"))

    with pytest.raises(InvalidRequest, match="^CSR signature is invalid$"):
        load_csr(tampered.public_bytes(serialization.Encoding.PEM).decode())


def test_load_csr_rejects_oversized_input_before_parsing() -> None:
    valid = make_csr(ec.generate_private_key(ec.SECP256R1()))

    with pytest.raises(InvalidRequest, match="at most 16384 allowed"):
        load_csr(valid + " " * 16384)


def test_key_pool_hands_out_rsa_2048_keys_as_pkcs1_pem() -> None:
    pool = KeyPool(size=2)
    before = set(threading.enumerate())
    pool.start()
    started = set(threading.enumerate()) - before
    try:
        deadline = time.monotonic() + 30
        while pool.ready() < 2:
            assert time.monotonic() < deadline, "pool did not fill"
            time.sleep(0.01)
        keys = [pool.take(timeout=5) for _ in range(3)]  # the third may be made by the caller
    finally:
        pool.stop()

    assert len({k.private_numbers().d for k in keys if isinstance(k, rsa.RSAPrivateKey)}) == 3
    for key in keys:
        assert isinstance(key, rsa.RSAPrivateKey)
        assert key.key_size == 2048
        text = private_key_pem(key)
        assert text.startswith("-----BEGIN RSA PRIVATE KEY-----\n")
        assert serialization.load_pem_private_key(text.encode(), None).public_key() == key.public_key()
    assert started and not any(thread.is_alive() for thread in started)
    assert not pool.running


def test_key_pool_generates_in_the_caller_when_empty() -> None:
    pool = KeyPool(size=1, algorithm="ec")  # never started

    key = pool.take(timeout=0)

    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert private_key_pem(key).startswith("-----BEGIN EC PRIVATE KEY-----\n")


def test_key_pool_stop_is_idempotent_and_restartable() -> None:
    pool = KeyPool(size=1, algorithm="ec")
    pool.start()
    pool.stop()
    pool.stop()
    pool.start()
    try:
        assert pool.running
        assert isinstance(pool.take(timeout=5), ec.EllipticCurvePrivateKey)
    finally:
        pool.stop()
    assert not pool.running
