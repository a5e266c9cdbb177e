"""The EST door over real HTTP, the real emulator and a real SQLite store: what each operation
answers, how an API key authenticates, that a retried enroll gets the same certificate, and that
bad input gets a precise refusal and loses nothing."""

from __future__ import annotations

import base64
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AttributeOID, NameOID
from est_client import PKCS10, EstClient, b64, basic, certificates_of, make_csr, weak_rsa_csr

from emulator import Fault

SPKI = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo


def issue_key(est: EstClient, **spec: Any) -> str:
    response = est.api.post("/admin/keys", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["apiKey"])


def issued(emulator: Any) -> list[dict[str, Any]]:
    """The certificates fleet provisioning made (not the emulator's claim certificate)."""
    return [c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]


def audit(est: EstClient) -> list[dict[str, Any]]:
    response = est.api.get("/admin/registrations")
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def assert_text_refusal(response: requests.Response, status: int, *says: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["Content-Type"].startswith("text/plain"), response.headers
    for said in says:
        assert said in response.text, (said, response.text)
    assert "Request id: " in response.text


# -- cacerts and csrattrs --------------------------------------------------------------------------


def test_cacerts_answers_the_ca_that_signs_issued_certificates(est_service: Any, emulator: Any) -> None:
    est = est_service()
    for label in (None, "demo"):
        response = est.get("cacerts", label)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/pkcs7-mime"
        ca = x509.load_pem_x509_certificate(emulator.ca_path.read_bytes())
        assert certificates_of(response) == [ca]


def test_cacerts_takes_its_own_setting_first(
    serve: Any, unreachable_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator: Any
) -> None:
    chain = tmp_path / "chain.pem"
    chain.write_bytes(emulator.ca_path.read_bytes() + emulator.claim_cert_path.read_bytes())
    monkeypatch.setenv("PROVISIONER_EST_CACERTS_FILE", str(chain))
    api = serve(unreachable_settings())
    response = requests.get(api.base_url + "/.well-known/est/cacerts", timeout=30)
    assert response.status_code == 200
    # PKCS#7 keeps its certificates in a SET: DER sorts them, whatever the file's order.
    assert set(certificates_of(response)) == set(x509.load_pem_x509_certificates(chain.read_bytes()))


def test_cacerts_without_a_configured_ca_says_what_to_set(est_offline: EstClient) -> None:
    assert_text_refusal(est_offline.get("cacerts"), 404, "PROVISIONER_EST_CACERTS_FILE")


def test_a_cacerts_file_without_a_certificate_stops_the_app_at_start(
    make_settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service import create_app
    from service.config import SettingsError

    empty = tmp_path / "empty.pem"
    empty.write_text("nothing here\n")
    monkeypatch.setenv("PROVISIONER_EST_CACERTS_FILE", str(empty))
    with pytest.raises(SettingsError, match="holds no PEM certificate"):
        create_app(make_settings())
    monkeypatch.setenv("PROVISIONER_EST_CACERTS_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(SettingsError, match="cannot be read"):
        create_app(make_settings())


def test_csrattrs_asks_for_the_serial_number_in_the_subject(est_offline: EstClient, tmp_path: Path) -> None:
    response = est_offline.get("csrattrs", "demo")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/csrattrs"
    der = tmp_path / "attrs.der"
    der.write_bytes(base64.b64decode(response.content))
    parsed = subprocess.run(
        ["openssl", "asn1parse", "-inform", "DER", "-in", str(der)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    assert "SEQUENCE" in parsed and ":serialNumber" in parsed


# -- enroll: authentication ------------------------------------------------------------------------


def test_an_enroll_without_credentials_is_challenged_for_basic_first(est_offline: EstClient) -> None:
    response = est_offline.post("simpleenroll", b64(make_csr()))
    assert_text_refusal(response, 401, "HTTP Basic")
    # libest reads the first challenge only, and answers it only if it names Basic.
    challenges = response.raw.headers.getlist("WWW-Authenticate")
    assert challenges[0].startswith('Basic realm="')
    assert any(c.startswith("Bearer ") for c in challenges)


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(b"tool:not-a-key").decode(),
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic !!!",
        "Bearer not-a-key",
        "Digest username=x",
    ],
)
def test_a_wrong_credential_is_401(est_offline: EstClient, authorization: str) -> None:
    response = est_offline.post("simpleenroll", b64(make_csr()), headers={"Authorization": authorization})
    assert_text_refusal(response, 401)
    assert response.headers["WWW-Authenticate"].startswith("Basic")


def test_basic_with_the_api_key_as_password_enrolls(est_service: Any, emulator: Any) -> None:
    est = est_service()
    der = make_csr("SN-EST-1")
    response = est.enroll(der, auth=basic(est.key, user="anyone"))
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "application/pkcs7-mime; smime-type=certs-only"
    assert response.headers["Cache-Control"] == "no-store"
    (certificate,) = certificates_of(response)
    csr = x509.load_der_x509_csr(der)
    assert certificate.public_key().public_bytes(*SPKI) == csr.public_key().public_bytes(*SPKI)
    # The thing AWS IoT registered from the label's template, its serial from the CSR.
    thing = emulator.registry.describe_thing("demo-SN-EST-1")
    assert thing is not None
    ca = x509.load_pem_x509_certificate(emulator.ca_path.read_bytes())
    certificate.verify_directly_issued_by(ca)
    (record,) = [r for r in audit(est) if r.get("thingName") == "demo-SN-EST-1"]
    assert record["outcome"] == "provisioned" and record["template"] == "demo"
    assert record["parameters"] == {"SerialNumber": "SN-EST-1"}


def test_bearer_and_an_issued_key_enroll_too(est_service: Any, emulator: Any) -> None:
    est = est_service()
    key = issue_key(est, name="line 4", templates=["demo"])
    der = make_csr(None, common_name="SN-EST-CN")  # no serialNumber: the common name gives it
    response = est.post("simpleenroll", b64(der), headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 200, response.text
    assert emulator.registry.describe_thing("demo-SN-EST-CN") is not None
    # Without a label, a key allowed one template uses it.
    response = est.enroll(make_csr("SN-EST-NOLABEL"), label=None, key=key)
    assert response.status_code == 200, response.text
    assert emulator.registry.describe_thing("demo-SN-EST-NOLABEL") is not None


def test_without_a_label_a_key_of_several_templates_is_told_to_name_one(est_service: Any) -> None:
    est = est_service()
    assert_text_refusal(est.enroll(make_csr(), label=None), 404, "Name the provisioning template")


def test_a_key_scope_judges_the_parameters_the_csr_gives(est_service: Any, emulator: Any) -> None:
    est = est_service()
    key = issue_key(est, templates=["demo"], parameterRules={"SerialNumber": "^LINE4-[0-9]+$"})
    assert_text_refusal(est.enroll(make_csr("OTHER-1"), key=key), 403, "does not match")
    assert_text_refusal(est.enroll(make_csr("LINE4-1"), label="other", key=key), 403, "may not use template")
    assert est.enroll(make_csr("LINE4-1"), key=key).status_code == 200
    assert [t["thingName"] for t in emulator.registry.list_things()] == ["demo-LINE4-1"]


# -- enroll: the same CSR again ----------------------------------------------------------------------


def test_an_enroll_retried_with_the_same_csr_gets_the_same_certificate(
    est_service: Any, emulator: Any
) -> None:
    est = est_service()
    der = make_csr("SN-RETRY")
    first = est.enroll(der)
    assert first.status_code == 200, first.text
    again = est.enroll(der)
    assert again.status_code == 200, again.text
    assert again.headers["Idempotent-Replayed"] == "true"
    assert certificates_of(again) == certificates_of(first)
    assert len(issued(emulator)) == 1
    # Another CSR for the same device is another request: a new certificate (the demo template
    # has no enrollment that allows one provision only).
    other = est.enroll(make_csr("SN-RETRY"))
    assert other.status_code == 200
    assert certificates_of(other) != certificates_of(first)
    assert len(issued(emulator)) == 2
    outcomes = [r["outcome"] for r in audit(est) if r.get("thingName") == "demo-SN-RETRY"]
    assert sorted(outcomes) == ["provisioned", "provisioned", "replayed"]


def test_the_same_csr_while_the_first_still_runs_is_202_with_retry_after(
    est_service: Any, emulator: Any
) -> None:
    est = est_service()
    emulator.set_fault("register_thing", Fault(latency=(1.5, 1.5), count=1))
    der = make_csr("SN-BUSY")
    first: dict[str, requests.Response] = {}
    running = threading.Thread(target=lambda: first.setdefault("answer", est.enroll(der)))
    running.start()
    try:
        deadline = 50
        while not emulator.faults.met and deadline:  # the first reached AWS IoT
            deadline -= 1
            threading.Event().wait(0.05)
        second = est.enroll(der)
    finally:
        running.join(timeout=30)
    assert_text_refusal(second, 202, "still being enrolled", "Send the same request again")
    assert int(second.headers["Retry-After"]) >= 1
    assert first["answer"].status_code == 200
    polled = est.enroll(der)
    assert polled.status_code == 200 and certificates_of(polled) == certificates_of(first["answer"])
    assert len(issued(emulator)) == 1


def test_throttling_is_503_with_retry_after(est_service: Any, emulator: Any) -> None:
    est = est_service()
    key = issue_key(est, templates=["demo"], ratePerMinute=1)
    assert est.enroll(make_csr("SN-RATE-1"), key=key).status_code == 200
    limited = est.enroll(make_csr("SN-RATE-2"), key=key)
    assert_text_refusal(limited, 503, "limited to 1 requests a minute")
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    emulator.set_fault("register_thing", Fault(reject=(429, "ThrottlingException", "Rate exceeded")))
    throttled = est.enroll(make_csr("SN-AWS-THROTTLED"))
    assert_text_refusal(throttled, 503, "ThrottlingException")
    assert "Retry-After" in throttled.headers


# -- bad input: a precise refusal, nothing lost -----------------------------------------------------


def unsigned_csr() -> bytes:
    """A PKCS#10 whose signature does not verify (one bit of the signature flipped)."""
    der = bytearray(make_csr("SN-BADSIG"))
    der[-3] ^= 0x01
    return bytes(der)


def pop_csr() -> bytes:
    """A CSR with a challengePassword, as libest's -z puts the TLS session's tls-unique in it."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.SERIAL_NUMBER, "SN-POP")]))
        .add_attribute(AttributeOID.CHALLENGE_PASSWORD, b"tls-unique-value")
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    ("label", "body", "content_type", "status", "says"),
    [
        ("demo", b64(make_csr()), "application/json", 415, "application/pkcs10"),
        ("demo", b64(make_csr()), None, 415, "application/pkcs10"),
        ("demo", b"this is not base64!", PKCS10, 400, "not base64"),
        ("demo", base64.b64encode(b"hello, not a CSR"), PKCS10, 400, "not of a DER PKCS#10"),
        ("demo", b"", PKCS10, 400, "empty"),
        ("demo", b64(unsigned_csr()), PKCS10, 400, "signature is not valid"),
        ("demo", b64(weak_rsa_csr()), PKCS10, 400, "RSA key of 1024 bits"),
        ("demo", b64(make_csr(None)), PKCS10, 400, "no serialNumber and no common name"),
        ("demo", b64(pop_csr()), PKCS10, 400, "cannot check it"),
        ("demo", b"QUJD" * 5000, PKCS10, 413, "at most"),
        ("bad.label", b64(make_csr()), PKCS10, 404, "Unknown EST label"),
        ("x" * 37, b64(make_csr()), PKCS10, 404, "Unknown EST label"),
    ],
    ids=[
        "json",
        "untyped",
        "not-base64",
        "not-pkcs10",
        "empty",
        "signature",
        "weak-key",
        "no-serial",
        "tls-unique",
        "oversize",
        "label-form",
        "label-length",
    ],
)
def test_bad_input_gets_a_precise_refusal_and_loses_nothing(
    est_service: Any,
    emulator: Any,
    label: str,
    body: bytes,
    content_type: str | None,
    status: int,
    says: str,
) -> None:
    est = est_service()
    key = issue_key(est, templates=["demo"], maxProvisions=1)
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    response = est.post("simpleenroll", body, label, headers=headers, auth=basic(key))
    assert_text_refusal(response, status, says)
    assert issued(emulator) == [] and emulator.registry.list_things() == []
    (record,) = audit(est)
    assert record["httpStatus"] == status and record["outcome"] == "refused"
    # Nothing was taken: the key's one provision is still there.
    assert est.enroll(make_csr("SN-AFTER"), key=key).status_code == 200
    assert est.api.get(f"/admin/keys/{record['keyId']}").json()["provisions"] == 1


def test_an_oversize_chunked_body_is_413(est_offline: EstClient) -> None:
    chunks = iter([b"QUJD" * 2048] * 3)
    response = est_offline.post("simpleenroll", chunks, auth=basic(est_offline.key))  # type: ignore[arg-type]
    assert_text_refusal(response, 413, "at most 16384")


def test_an_unknown_template_is_an_unknown_label(est_service: Any, emulator: Any) -> None:
    est = est_service()
    response = est.enroll(make_csr("SN-NOTEMPLATE"), label="no-such-template")
    assert_text_refusal(response, 404, "Unknown EST label 'no-such-template'")
    assert emulator.registry.list_things() == []


def test_base64_with_content_transfer_encoding_and_crlf_lines_is_read(
    est_service: Any, emulator: Any
) -> None:
    # RFC 8951: Content-Transfer-Encoding is no HTTP header and is ignored; line breaks are allowed.
    est = est_service()
    encoded = base64.b64encode(make_csr("SN-CTE"))
    body = b"\r\n".join(encoded[i : i + 64] for i in range(0, len(encoded), 64)) + b"\r\n"
    response = est.post(
        "simpleenroll", body, headers={"Content-Transfer-Encoding": "base64"}, auth=basic(est.key)
    )
    assert response.status_code == 200, response.text
    assert emulator.registry.describe_thing("demo-SN-CTE") is not None


# -- what is not offered, and routing ---------------------------------------------------------------


@pytest.mark.parametrize("operation", ["serverkeygen", "fullcmc"])
def test_serverkeygen_and_fullcmc_are_501(est_offline: EstClient, operation: str) -> None:
    response = est_offline.post(operation, b"", label="demo")
    assert_text_refusal(response, 501, f"does not offer {operation}")


def test_an_unknown_operation_is_404_and_a_wrong_method_405(est_offline: EstClient) -> None:
    assert_text_refusal(est_offline.get("enroll"), 404, "no operation")
    wrong = est_offline.get("simpleenroll", "demo")
    assert_text_refusal(wrong, 405, "takes POST")
    assert wrong.headers["Allow"] == "POST"
    wrong = requests.put(est_offline.url("cacerts"), timeout=30)
    assert_text_refusal(wrong, 405, "takes GET")


def test_simplereenroll_with_an_api_key_renews_nothing(est_offline: EstClient) -> None:
    response = est_offline.post("simplereenroll", b64(make_csr()), auth=basic(est_offline.key))
    assert_text_refusal(response, 403, "mutual TLS")
    assert est_offline.post("simplereenroll", b64(make_csr())).status_code == 401


def test_the_serial_number_attribute_is_taken_before_the_common_name(est_service: Any, emulator: Any) -> None:
    est = est_service()
    response = est.enroll(make_csr("SN-FIRST", common_name="device"))
    assert response.status_code == 200
    assert [t["thingName"] for t in emulator.registry.list_things()] == ["demo-SN-FIRST"]


def test_without_a_store_an_enroll_works_and_keeps_nothing_to_replay(est_service: Any, emulator: Any) -> None:
    est = est_service(PROVISIONER_DATABASE_URL="off")
    der = make_csr("SN-NOSTORE")
    first = est.enroll(der)
    assert first.status_code == 200, first.text
    again = est.enroll(der)
    assert again.status_code == 200 and "Idempotent-Replayed" not in again.headers
    assert len(issued(emulator)) == 2
