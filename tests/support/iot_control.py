"""The emulator's control plane from the outside: boto3 clients, requests signed by botocore and
sent raw (for what boto3 would refuse to send), the AWS CLI as a subprocess, and devices
provisioned over MQTT with a certificate of their own."""

from __future__ import annotations

import http.client
import json
import os
import ssl
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from device_keys import make_csr
from issued_devices import IssuedDevice, saved
from mqtt_support import CSR_TOPIC, MqttTestClient

from emulator import DEFAULT_ACCESS_KEY_ID, DEFAULT_SECRET_ACCESS_KEY, Emulator

REGION = "us-east-1"
# No retries: a test must see the emulator's first answer, and a refused call must fail at once.
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=10)


def iot_client(
    emulator: Emulator,
    *,
    tls: bool = False,
    key_id: str = DEFAULT_ACCESS_KEY_ID,
    secret: str = DEFAULT_SECRET_ACCESS_KEY,
) -> Any:
    """`boto3.client("iot")` pointed at the emulator's control plane (HTTPS trusts its CA)."""
    return boto3.client(
        "iot",
        endpoint_url=emulator.urls["control-tls" if tls else "control"],
        region_name=REGION,
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
        verify=str(emulator.ca_path) if tls else None,
        config=NO_RETRIES,
    )


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def error_type(self) -> str | None:
        return self.headers.get("x-amzn-errortype")

    def json(self) -> Any:
        return json.loads(self.body)


def signed_request(
    emulator: Emulator,
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    *,
    secret: str = DEFAULT_SECRET_ACCESS_KEY,
    sign: bool = True,
) -> Answer:
    """One request signed by botocore's own SigV4 signer (service `iot`) and sent with http.client,
    so that a test can send what boto3's serializer would never produce."""
    url = emulator.urls["control"] + path
    request = AWSRequest(method=method, url=url, data=body, headers=dict(headers or {}))
    if sign:
        SigV4Auth(Credentials(DEFAULT_ACCESS_KEY_ID, secret), "iot", REGION).add_auth(request)
    return send_raw(emulator, method, path, body, dict(request.headers.items()))


def send_raw(emulator: Emulator, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    parts = urlsplit(emulator.urls["control"])
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def aws_cli(
    emulator: Emulator, tmp_path: Path, *args: str, tls: bool = True, ca_bundle: bool = True
) -> subprocess.CompletedProcess[str]:
    """`aws iot ARGS --endpoint-url ...` as an operator runs it: credentials from AWS_* variables
    only (no config file of this machine), over HTTPS trusting the emulator's CA through
    AWS_CA_BUNDLE (unless `ca_bundle` is False: then pass --no-verify-ssl)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_")
        and key not in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy")
    }
    env.update(
        AWS_ACCESS_KEY_ID=DEFAULT_ACCESS_KEY_ID,
        AWS_SECRET_ACCESS_KEY=DEFAULT_SECRET_ACCESS_KEY,
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp_path / "no-aws-config"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-aws-credentials"),
        AWS_EC2_METADATA_DISABLED="true",
        AWS_MAX_ATTEMPTS="1",
        AWS_PAGER="",
    )
    if tls and ca_bundle:
        env["AWS_CA_BUNDLE"] = str(emulator.ca_path)
    endpoint = emulator.urls["control-tls" if tls else "control"]
    aws = Path(sys.executable).with_name("aws")
    return subprocess.run(
        [str(aws), "iot", *args, "--endpoint-url", endpoint, "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def accepted_with_claim(emulator: Emulator, topic: str, request: dict[str, Any]) -> dict[str, Any]:
    """`request` published to a fleet provisioning `topic` over MQTT by a client with the claim;
    the answer, which must come on <topic>/accepted."""
    client = MqttTestClient(emulator.urls["mqtt"]).connect()
    try:
        outcome, answer = client.request(topic, request)
    finally:
        client.close()
    assert outcome == "accepted", answer
    return dict(answer)


def create_certificate_from_csr(emulator: Emulator, csr_pem: str) -> dict[str, Any]:
    """CreateCertificateFromCsr: its answer (certificateId, certificatePem, certificateOwnershipToken);
    the certificate stays PENDING_ACTIVATION until RegisterThing redeems the token."""
    return accepted_with_claim(emulator, CSR_TOPIC, {"certificateSigningRequest": csr_pem})


def register_thing(
    emulator: Emulator, token: str, template: str, parameters: dict[str, str]
) -> dict[str, Any]:
    """RegisterThing with `template`, redeeming an ownership token: its answer (thingName)."""
    topic = f"$aws/provisioning-templates/{template}/provision/json"
    return accepted_with_claim(
        emulator, topic, {"certificateOwnershipToken": token, "parameters": parameters}
    )


def register_over_mqtt(
    emulator: Emulator, csr_pem: str, template: str, parameters: dict[str, str]
) -> dict[str, Any]:
    """Fleet provisioning as a device does it with the claim: CreateCertificateFromCsr, then
    RegisterThing with `template`; the CreateCertificateFromCsr answer with the thingName added."""
    created = create_certificate_from_csr(emulator, csr_pem)
    registered = register_thing(emulator, created["certificateOwnershipToken"], template, parameters)
    return {**created, "thingName": registered["thingName"]}


def issue_pending_certificate(
    emulator: Emulator, directory: Path, name: str
) -> tuple[dict[str, Any], Path, Path]:
    """A certificate from CreateCertificateFromCsr whose token is not redeemed (PENDING_ACTIVATION):
    its answer, and its certificate and key written to `directory` as <name>.pem and <name>.key."""
    key_pem, csr_pem = make_csr(name)
    created = create_certificate_from_csr(emulator, csr_pem)
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_text(created["certificatePem"])
    key_path.write_text(key_pem)
    return created, cert_path, key_path


def provision_device(emulator: Emulator, directory: Path, serial: str) -> IssuedDevice:
    """A device provisioned as the fleet does it (CreateCertificateFromCsr, RegisterThing with the
    demo template), its key made here: an ACTIVE certificate attached to thing demo-<serial>."""
    key_pem, csr_pem = make_csr(serial)
    answer = register_over_mqtt(emulator, csr_pem, "demo", {"SerialNumber": serial})
    return saved(directory, serial, answer, key_pem)


def tls_context(emulator: Emulator) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(emulator.ca_path))


def connect_refused(client: MqttTestClient) -> str:
    """Connect a client that must be refused; return why, its sockets closed either way."""
    try:
        client.connect()
    except (ConnectionError, TimeoutError, OSError) as exc:
        return str(exc)
    finally:
        client.close()
    raise AssertionError("the connection was accepted")
