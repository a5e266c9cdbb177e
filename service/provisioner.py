"""The fleet-provisioning flow: create a certificate, check it is ours, register the thing.

Interface used by the HTTP layer:
    provisioner.provision(template_name=..., parameters=..., csr=..., request_id=...) -> ProvisionResult
        raises service.errors.ServiceError subclasses (never anything else on purpose)
    provisioner.readiness() -> dict  {"ready": bool, "connections": [...], ...}
    provisioner.close()              finish in-flight flows, then disconnect (graceful shutdown)
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from service.errors import ProvisioningRejected, ServiceError, Throttled, UpstreamInvalid
from service.mqtt_link import CREATE_FROM_CSR_TOPIC, CREATE_TOPIC, Answer, template_topic
from service.pool import ConnectionPool
from service.settings import Settings
from service.sigv4 import AwsCredentials, credentials_from_botocore, static_credentials

log = logging.getLogger("service.provisioner")

_CERTIFICATE_ID = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ProvisionResult:
    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key: str | None
    device_configuration: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the key
        return f"ProvisionResult(thing_name={self.thing_name!r}, certificate_id={self.certificate_id!r})"


class Provisioner:
    def __init__(self, settings: Settings,
                 credentials: Callable[[], AwsCredentials] | None = None) -> None:
        self.settings = settings
        if credentials is None and settings.auth_mode == "sigv4":
            if settings.static_credentials:      # local mode: the emulator's test pair
                credentials = static_credentials(*settings.static_credentials)
            else:
                credentials = credentials_from_botocore(settings.aws_profile)
        self.pool = ConnectionPool(settings, credentials)

    def provision(self, *, template_name: str, parameters: dict[str, str], csr: str | None,
                  request_id: str) -> ProvisionResult:
        started = time.monotonic()
        deadline = started + self.settings.request_timeout_seconds
        try:
            with self.pool.connection(deadline=deadline) as link:
                step_deadline = lambda: min(deadline,  # noqa: E731
                                            time.monotonic() + self.settings.step_timeout_seconds)
                if csr is not None:
                    created = _accepted(link.call(CREATE_FROM_CSR_TOPIC,
                                                  {"certificateSigningRequest": csr},
                                                  step="create", deadline=step_deadline()),
                                        step="create")
                else:
                    created = _accepted(link.call(CREATE_TOPIC, {}, step="create",
                                                  deadline=step_deadline()), step="create")
                certificate_pem, private_key = _check_created(created, csr)
                link.ensure_template(template_name, deadline=step_deadline())
                registered = _accepted(link.call(
                    template_topic(template_name),
                    {"certificateOwnershipToken": created["certificateOwnershipToken"],
                     "parameters": parameters},
                    step="register", deadline=step_deadline()), step="register")
        except ServiceError as exc:
            log.info("request %s: %s failed after %.0f ms: %s", request_id, exc.step or "flow",
                     (time.monotonic() - started) * 1000, exc.detail)
            raise
        thing_name = registered.get("thingName")
        configuration = registered.get("deviceConfiguration", {})
        if not isinstance(thing_name, str) or not isinstance(configuration, dict):
            raise UpstreamInvalid("AWS IoT's RegisterThing answer lacks thingName or "
                                  "deviceConfiguration", step="register")
        log.info("request %s: provisioned thing %r, certificate %s... in %.0f ms (%s)",
                 request_id, thing_name, created["certificateId"][:12],
                 (time.monotonic() - started) * 1000, "csr" if csr else "server key")
        return ProvisionResult(thing_name=thing_name, certificate_id=created["certificateId"],
                               certificate_pem=certificate_pem, private_key=private_key,
                               device_configuration={str(k): str(v)
                                                     for k, v in configuration.items()})

    def readiness(self) -> dict[str, Any]:
        return self.pool.readiness()

    def close(self, drain_seconds: float = 0.0) -> None:
        self.pool.close(drain_seconds=drain_seconds)


def _accepted(answer: Answer, *, step: str) -> dict[str, Any]:
    if answer.outcome == "accepted":
        return answer.body
    body = answer.body
    status = body.get("statusCode")
    status = status if isinstance(status, int) else 500
    code = str(body.get("errorCode", "Unknown"))[:200]
    message = str(body.get("errorMessage", ""))[:1000]
    if status == 429 or "throttl" in code.lower():
        raise Throttled(step=step, status_code=status, error_code=code, error_message=message)
    raise ProvisioningRejected(step=step, status_code=status, error_code=code,
                               error_message=message)


def _check_created(created: dict[str, Any], csr: str | None) -> tuple[str, str | None]:
    """Validate a Create* answer and prove the certificate is this caller's (reference 2)."""
    certificate_id = created.get("certificateId")
    certificate_pem = created.get("certificatePem")
    token = created.get("certificateOwnershipToken")
    private_key = created.get("privateKey") if csr is None else None
    if not (isinstance(certificate_id, str) and _CERTIFICATE_ID.match(certificate_id)
            and isinstance(certificate_pem, str) and isinstance(token, str) and token):
        raise UpstreamInvalid("AWS IoT's certificate answer lacks certificateId, "
                              "certificatePem or certificateOwnershipToken", step="create")
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        expected: Any
        if csr is not None:
            expected = x509.load_pem_x509_csr(csr.encode()).public_key()
        else:
            if not isinstance(private_key, str):
                raise UpstreamInvalid("AWS IoT's CreateKeysAndCertificate answer has no "
                                      "privateKey", step="create")
            # Only the public half is compared. OpenSSL's full RSA key check costs ~48 ms of CPU
            # per key (measured, bench) and proves nothing we need: the key came from AWS.
            expected = serialization.load_pem_private_key(
                private_key.encode(), None, unsafe_skip_rsa_key_validation=True).public_key()
        matches = _spki(certificate.public_key()) == _spki(expected)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UpstreamInvalid("AWS IoT returned a certificate or key that does not parse",
                              step="create") from None
    if not matches:
        # Never hand out a certificate that belongs to someone else's flow.
        raise UpstreamInvalid("the certificate AWS IoT returned is not for this request's key; "
                              "it was discarded", step="create")
    return certificate_pem, private_key


def _spki(public_key: Any) -> bytes:
    return bytes(public_key.public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo))
