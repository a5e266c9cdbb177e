"""EST with curl and openssl as RFC 7030's examples use them, as subprocesses, against the service
as production runs it (gunicorn) serving TLS, on the real emulator: `openssl req` makes the CSR,
`openssl base64` encodes it, curl posts it with HTTP Basic, `openssl base64 -d | openssl pkcs7
-inform DER -print_certs` reads the answer; the device then renews with curl over mutual TLS."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from est_client import EstClient, ServerTls
from shell import needs_curl, ok, sh

from emulator import Emulator

pytestmark = needs_curl


@pytest.fixture
def est(est_gunicorn: Callable[..., EstClient], server_tls: ServerTls, emulator: Emulator) -> EstClient:
    return est_gunicorn(server_tls, client_ca=emulator.ca_path)


def test_curl_and_openssl_enroll_read_the_answer_and_renew(
    est: EstClient, emulator: Emulator, tmp_path: Path
) -> None:
    curl = f"curl -sS --fail-with-body --cacert {est.verify}"
    url = f"{est.base_url}/.well-known/est"
    # cacerts: the CA the device will see its certificate chain to.
    printed = ok(
        sh(f"{curl} {url}/cacerts | openssl base64 -d | openssl pkcs7 -inform DER -print_certs", tmp_path)
    )
    assert "Emulated AWS IoT CA" in printed
    # csrattrs: what the CSR should carry.
    parsed = ok(
        sh(f"{curl} {url}/demo/csrattrs | openssl base64 -d | openssl asn1parse -inform DER", tmp_path)
    )
    assert ":serialNumber" in parsed
    # simpleenroll, as the RFC's example: the CSR in base64, HTTP Basic, the answer in PKCS#7.
    ok(
        sh(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout device.key "
            "-subj /serialNumber=SN-CURL-1 -outform DER -out req.der\n"
            "openssl base64 -in req.der -out req.b64\n"
            f"{curl} --data-binary @req.b64 -H 'Content-Type: application/pkcs10' "
            f"-u factory-tool:{est.key} -o cert.p7.b64 -w '%{{http_code}} HTTP/%{{http_version}}\\n' "
            f"{url}/demo/simpleenroll > status.txt\n"
            "openssl base64 -d -in cert.p7.b64 | openssl pkcs7 -inform DER -print_certs -out cert.pem",
            tmp_path,
        )
    )
    assert (tmp_path / "status.txt").read_text() == "200 HTTP/1.1\n"  # libest refuses HTTP/1.0
    certificate = x509.load_pem_x509_certificate((tmp_path / "cert.pem").read_bytes())
    key_matches = ok(
        sh(
            "diff <(openssl x509 -in cert.pem -noout -pubkey) <(openssl pkey -in device.key -pubout) "
            "&& echo same",
            tmp_path,
        )
    )
    assert key_matches.strip() == "same"
    ok(sh(f"openssl verify -CAfile {emulator.ca_path} cert.pem", tmp_path))
    assert emulator.registry.describe_thing("demo-SN-CURL-1") is not None
    # The same request again (its answer lost): the same certificate.
    ok(
        sh(
            f"{curl} --data-binary @req.b64 -H 'Content-Type: application/pkcs10' -u t:{est.key} "
            f"{url}/demo/simpleenroll "
            "| openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out again.pem",
            tmp_path,
        )
    )
    assert x509.load_pem_x509_certificate((tmp_path / "again.pem").read_bytes()) == certificate
    # simplereenroll over mutual TLS: a new key, the subject of the certificate being renewed.
    ok(
        sh(
            "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out new.key\n"
            # The request for the certificate being renewed: its subject, the new key.
            "openssl x509 -x509toreq -in cert.pem -key new.key | openssl req -outform DER "
            "| openssl base64 > renew.b64\n"
            f"{curl} --cert cert.pem --key device.key --data-binary @renew.b64 "
            f"-H 'Content-Type: application/pkcs10' {url}/demo/simplereenroll "
            "| openssl base64 -d | openssl pkcs7 -inform DER -print_certs -out renewed.pem\n"
            "diff <(openssl x509 -in renewed.pem -noout -pubkey) <(openssl pkey -in new.key -pubout)",
            tmp_path,
        )
    )
    renewed = x509.load_pem_x509_certificate((tmp_path / "renewed.pem").read_bytes())
    assert renewed.subject == certificate.subject and renewed != certificate
    described = emulator.registry.describe_thing("demo-SN-CURL-1")
    assert described is not None and len(described["principals"]) == 2


def test_curl_sees_the_challenge_and_the_refusals_as_text(est: EstClient, tmp_path: Path) -> None:
    url = f"{est.base_url}/.well-known/est/demo/simpleenroll"
    curl = f"curl -sS --cacert {est.verify} -D headers.txt -o body.txt -w '%{{http_code}}'"
    ok(
        sh(
            "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
            "-subj /CN=SN-CURL-2 -outform DER | openssl base64 > req.b64",
            tmp_path,
        )
    )
    status = ok(sh(f"{curl} --data-binary @req.b64 -H 'Content-Type: application/pkcs10' {url}", tmp_path))
    headers = (tmp_path / "headers.txt").read_text()
    assert status == "401" and headers.startswith("HTTP/1.1 401")
    assert 'WWW-Authenticate: Basic realm="iot-provisioner EST"' in headers
    # The PEM a person might paste instead of base64 DER: refused, saying why.
    ok(sh("openssl req -new -key k.pem -subj /CN=SN-CURL-2 -out req.pem", tmp_path))
    status = ok(
        sh(
            f"{curl} --data-binary @req.pem -H 'Content-Type: application/pkcs10' -u t:{est.key} {url}",
            tmp_path,
        )
    )
    assert status == "400"
    assert "not base64" in (tmp_path / "body.txt").read_text()
    status = ok(
        sh(f"{curl} --data-binary @req.b64 -H 'Content-Type: text/plain' -u t:{est.key} {url}", tmp_path)
    )
    assert status == "415" and "application/pkcs10" in (tmp_path / "body.txt").read_text()
