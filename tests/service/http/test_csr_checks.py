"""What the `csr` field may carry: one CSR for a key AWS IoT accepts, never a private key; and
what goes on to AWS IoT is the CSR re-encoded, never the caller's string. Over real HTTP."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from repository import TEST_DATA

from emulator import Emulator
from service.http.schemas import ProvisionRequestSchema

Key = Any
# A DSA CSR made once with openssl (gendsa 2048): cryptography deprecates DSA (51), so the suite
# cannot make one without the warning the service must not trigger either.
DSA_CSR = (TEST_DATA / "dsa-2048.csr").read_text()


def csr_for(key: Key) -> str:
    edwards = isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
    algorithm = None if edwards else hashes.SHA256()
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "device")]))
        .sign(key, algorithm)
    )
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: Key, form: serialization.PrivateFormat, encrypted: bool = False) -> str:
    encryption = (
        serialization.BestAvailableEncryption(b"secret-passphrase")
        if encrypted
        else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, form, encryption).decode()


EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
PKCS8 = serialization.PrivateFormat.PKCS8
TRADITIONAL = serialization.PrivateFormat.TraditionalOpenSSL

PRIVATE_KEYS = {
    "EC (SEC1)": key_pem(EC_KEY, TRADITIONAL),
    "RSA (PKCS#1)": key_pem(RSA_KEY, TRADITIONAL),
    "PKCS#8": key_pem(EC_KEY, PKCS8),
    "encrypted PKCS#8": key_pem(EC_KEY, PKCS8, encrypted=True),
}


def provision(api: Any, csr: str, serial: str = "SN-CSR") -> Any:
    body = {"templateName": "demo", "parameters": {"SerialNumber": serial}, "csr": csr}
    return api.post("/provision", json=body)


def refused(response: Any) -> str:
    assert response.status_code == 422, response.text
    problem = response.json()
    assert list(problem["errors"]) == ["csr"]
    return str(problem["detail"])


@pytest.mark.parametrize("kind", list(PRIVATE_KEYS))
@pytest.mark.parametrize("key_first", [True, False], ids=["key-then-csr", "csr-then-key"])
def test_a_private_key_in_csr_is_refused_not_forwarded_and_never_echoed(
    api: Any, kind: str, key_first: bool
) -> None:
    device_key = PRIVATE_KEYS[kind]
    csr = csr_for(EC_KEY)
    sent = device_key + csr if key_first else csr + device_key  # `cat device.key device.csr`
    response = provision(api, sent)
    detail = refused(response)
    assert "private key was sent" in detail
    assert "NOT forwarded" in detail
    assert "exposed" in detail
    body_lines = [line for line in device_key.splitlines() if "-----" not in line]
    assert not any(line in response.text for line in body_lines), "the key was echoed"
    assert api.app.extensions["provisioner"].current is None  # no MQTT traffic at all


def test_a_private_key_alone_is_refused_as_a_private_key(api: Any) -> None:
    assert "private key was sent" in refused(provision(api, PRIVATE_KEYS["PKCS#8"]))


@pytest.mark.parametrize("kind", list(PRIVATE_KEYS))
def test_a_private_key_in_a_parameter_is_refused_and_never_kept_in_the_audit_trail(
    api: Any, kind: str
) -> None:
    device_key = PRIVATE_KEYS[kind]
    body = {"templateName": "demo", "parameters": {"SerialNumber": "SN-1", "Note": device_key}}
    response = api.post("/provision", json=body)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert list(problem["errors"]) == ["parameters"]
    assert "'Note'" in problem["detail"] and "private key was sent" in problem["detail"]
    body_lines = [line for line in device_key.splitlines() if "-----" not in line]
    assert not any(line in response.text for line in body_lines), "the key was echoed"
    assert api.app.extensions["provisioner"].current is None  # no MQTT traffic at all
    trail = api.get("/admin/registrations").json()["items"]
    assert [r["httpStatus"] for r in trail] == [422]
    assert not any(line in str(trail) for line in body_lines), "the key was kept in the audit trail"


@pytest.mark.parametrize(
    "extra",
    [
        "garbage\n",
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "second",  # replaced by a second CSR below
    ],
    ids=["text", "a certificate", "two CSRs"],
)
def test_anything_but_one_csr_block_is_refused(api: Any, extra: str) -> None:
    csr = csr_for(EC_KEY)
    extra = csr_for(ec.generate_private_key(ec.SECP256R1())) if extra == "second" else extra
    assert "exactly one PEM certificate signing request" in refused(provision(api, csr + extra))
    assert api.app.extensions["provisioner"].current is None


@pytest.mark.parametrize(
    ("make_csr", "named"),
    [
        (lambda: csr_for(ed25519.Ed25519PrivateKey.generate()), "Ed25519"),
        (lambda: csr_for(ed448.Ed448PrivateKey.generate()), "Ed448"),
        (lambda: csr_for(rsa.generate_private_key(public_exponent=65537, key_size=1024)), "RSA 1024"),
        (lambda: csr_for(ec.generate_private_key(ec.SECP256K1())), "secp256k1"),
        (lambda: DSA_CSR, "DSA"),
    ],
    ids=["ed25519", "ed448", "rsa-1024", "secp256k1", "dsa"],
)
def test_key_types_aws_refuses_are_refused_before_any_mqtt(api: Any, make_csr: Any, named: str) -> None:
    detail = refused(provision(api, make_csr()))
    assert named in detail and "AWS IoT accepts" in detail
    assert api.app.extensions["provisioner"].current is None


@pytest.mark.parametrize(
    "make_key",
    [
        lambda: ec.generate_private_key(ec.SECP384R1()),
        lambda: ec.generate_private_key(ec.SECP521R1()),
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=3072),
    ],
    ids=["p-384", "p-521", "rsa-3072"],
)
def test_key_types_aws_accepts_provision_end_to_end(
    emulator: Emulator, live_api: Any, make_key: Any, request: pytest.FixtureRequest
) -> None:
    key = make_key()
    serial = "SN-" + request.node.callspec.id
    response = provision(live_api, csr_for(key), serial)
    assert response.status_code == 201, response.text
    certificate = x509.load_pem_x509_certificate(response.json()["certificatePem"].encode())
    assert certificate.public_key().public_numbers() == key.public_key().public_numbers()
    assert emulator.registry.describe_thing(f"demo-{serial}") is not None


def test_what_goes_to_aws_is_the_csr_re_encoded() -> None:
    csr = csr_for(EC_KEY)
    # Valid, but not as cryptography writes it: CRLF line ends and surrounding whitespace.
    sent = "\n  " + csr.replace("\n", "\r\n") + "\n\n"
    loaded = ProvisionRequestSchema().load({"templateName": "demo", "csr": sent})
    assert loaded["csr"] == csr


def test_a_csr_with_crlf_and_whitespace_provisions(emulator: Emulator, live_api: Any) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    sent = "\r\n" + csr_for(key).replace("\n", "\r\n") + "  \r\n"
    response = provision(live_api, sent, "SN-CRLF")
    assert response.status_code == 201, response.text
