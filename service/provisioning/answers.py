"""AWS IoT's answers turned into results or service errors: the one place that maps them.

`rejection` decides the HTTP status of every `.../rejected` answer; `checked_certificate` proves a
Create* answer belongs to this request before anything of it is handed out (answers carry no
correlation token: docs/correlation.md).
"""

from __future__ import annotations

import re
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from service.errors import (
    AnswerUnproven,
    ProvisioningRejected,
    TemplateNotFound,
    Throttled,
    UpstreamInvalid,
)

_CERTIFICATE_ID = re.compile(r"^[0-9a-f]{64}$")
_NOT_FOUND_CODES = ("ResourceNotFoundException", "NotFoundException")


def rejection(step: str, body: dict[str, Any]) -> ProvisioningRejected:
    """The error for a rejected answer: AWS's 4xx passed through, throttling 429 (the control
    plane throttles with 400 ThrottlingException), unknown template 404, AWS's 5xx 502."""
    status_code = body.get("statusCode")
    status_code = status_code if isinstance(status_code, int) else 500
    code = str(body.get("errorCode", "Unknown"))[:200]
    message = str(body.get("errorMessage", ""))[:1000]
    kind: type[ProvisioningRejected] = ProvisioningRejected
    status = status_code if 400 <= status_code < 500 else 502
    if status_code == 429 or "throttl" in code.lower():
        kind, status = Throttled, 429
    elif status_code == 404 or code in _NOT_FOUND_CODES:
        kind, status = TemplateNotFound, 404
    return kind(
        f"AWS IoT rejected {step}: {code}: {message}",
        step=step,
        status=status,
        error_code=code,
        error_message=message,
        about={"statusCode": status_code},
        retry_after=1 if kind is Throttled else None,
    )


def checked_certificate(created: dict[str, Any], csr: str | None) -> tuple[str, str | None]:
    """(certificatePem, privateKey or None) of a Create* answer proven to be this caller's."""
    certificate_id = created.get("certificateId")
    certificate_pem = created.get("certificatePem")
    token = created.get("certificateOwnershipToken")
    private_key = created.get("privateKey") if csr is None else None
    if not (
        isinstance(certificate_id, str)
        and _CERTIFICATE_ID.match(certificate_id)
        and isinstance(certificate_pem, str)
        and isinstance(token, str)
        and token
    ):
        raise UpstreamInvalid(
            "AWS IoT's certificate answer lacks certificateId, certificatePem or certificateOwnershipToken",
            step="create",
        )
    try:
        certificate = x509.load_pem_x509_certificate(certificate_pem.encode())
        expected: Any
        if csr is not None:
            expected = x509.load_pem_x509_csr(csr.encode()).public_key()
        else:
            if not isinstance(private_key, str):
                raise UpstreamInvalid(
                    "AWS IoT's CreateKeysAndCertificate answer has no privateKey", step="create"
                )
            # Only the public half is compared. OpenSSL's full RSA key check costs ~48 ms of CPU
            # per key (measured, bench) and proves nothing we need: the key came from AWS.
            expected = serialization.load_pem_private_key(
                private_key.encode(), None, unsafe_skip_rsa_key_validation=True
            ).public_key()
        matches = spki(certificate.public_key()) == spki(expected)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise UpstreamInvalid(
            "AWS IoT returned a certificate or key that does not parse", step="create"
        ) from None
    if not matches:
        # Never hand out a certificate that belongs to someone else's flow.
        raise AnswerUnproven(
            "an answer on this connection could not be proven to be this request's (the certificate "
            "is not for this request's key); nothing was handed out; retry",
            step="create",
            retry_after=1,
        )
    return certificate_pem, private_key


def registered_thing(registered: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """(thingName, deviceConfiguration) of a RegisterThing answer."""
    thing_name = registered.get("thingName")
    configuration = registered.get("deviceConfiguration", {})
    if not isinstance(thing_name, str) or not isinstance(configuration, dict):
        raise UpstreamInvalid(
            "AWS IoT's RegisterThing answer lacks thingName or deviceConfiguration", step="register"
        )
    return thing_name, {str(k): str(v) for k, v in configuration.items()}


def spki(public_key: Any) -> bytes:
    return bytes(
        public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
