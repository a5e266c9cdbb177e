"""Checks shared by the HTTP tests: a problem as the contract promises it, a provision as its caller
checks it (the certificate is for their key, AWS has the thing), and small request makers."""

from __future__ import annotations

import time
from typing import Any

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from emulator import Emulator

# A 2 s request deadline with 1 s steps and pool waits: room for one provision, not for a wait
# on AWS (throttling retries, a pace slot) that runs past it.
TWO_SECOND_DEADLINE = {
    "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "2",
    "PROVISIONER_STEP_TIMEOUT_SECONDS": "1",
    "PROVISIONER_POOL_WAIT_SECONDS": "1",
}


def problem_of(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["requestId"] == response.headers["X-Request-Id"]
    return body


def provision(api: Any, body: Any = None, **kwargs: Any) -> requests.Response:
    if body is None:
        body = {"templateName": "demo"}
    return api.post("/provision", json=body, **kwargs)


def provision_serial(
    api: Any, serial: str, csr: str | None = None, template: str = "demo", **kwargs: Any
) -> requests.Response:
    """POST /provision of `template` for SerialNumber `serial`, with `csr` when given (else AWS
    makes the key pair); `kwargs` go to the client's post (key=..., headers=...)."""
    body: dict[str, Any] = {"templateName": template, "parameters": {"SerialNumber": serial}}
    if csr is not None:
        body["csr"] = csr
    return api.post("/provision", json=body, **kwargs)  # type: ignore[no-any-return]


def device(serial: str, **fields: Any) -> dict[str, Any]:
    """A request for the emulator's `demo` template, which needs SerialNumber."""
    return {"templateName": "demo", "parameters": {"SerialNumber": serial}, **fields}


def assert_never_reached_the_provisioner(api: Any) -> None:
    # The app makes its provisioner on the first request that needs one: none made means the
    # request was answered by the HTTP layer alone and no MQTT connection was ever opened.
    assert api.app.extensions["provisioner"].current is None


def fleet_certificates(emulator: Emulator) -> list[str]:
    """Certificates made by fleet provisioning (everything but the claim certificate)."""
    return [c["certificateId"] for c in emulator.registry.list_certificates() if c["owner"] != "claim"]


def spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )


def assert_provisioned(
    emulator: Emulator, response: requests.Response, thing_name: str, *, key_pem: str | None = None
) -> dict[str, Any]:
    """A 201 as its caller checks it: the certificate is for their key, and AWS has the thing."""
    assert response.status_code == 201, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Cache-Control"] == "no-store"
    body: dict[str, Any] = response.json()
    assert body["thingName"] == thing_name
    certificate = x509.load_pem_x509_certificate(body["certificatePem"].encode())
    assert body["certificateId"] == certificate.fingerprint(hashes.SHA256()).hex()
    if key_pem is None:  # AWS made the key pair: the answer carries it
        key_pem = body["privateKey"]
    else:  # the caller sent a CSR: their key never leaves them
        assert "privateKey" not in body
    own_key = serialization.load_pem_private_key(key_pem.encode(), None)
    assert spki(certificate.public_key()) == spki(own_key.public_key())
    thing = emulator.registry.describe_thing(thing_name)
    assert thing is not None and body["certificateId"] in thing["principals"]
    assert emulator.registry.certificate_status(body["certificateId"]) == "ACTIVE"
    return body


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# --- operations endpoints -------------------------------------------------------------------
