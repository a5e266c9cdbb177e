"""The wire shapes of `POST /provision` (marshmallow 4): AWS camelCase outside, snake_case inside.

Every rule here is also written in `openapi.yaml`; the bounds on `parameters` come from settings,
so the request schema takes them in its constructor (`ProvisionRequestSchema(limits=...)`).
Errors are keyed by the wire name of the field (`templateName`, `parameters`, `csr`, or the unknown
field itself), each with a list of sentences.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import PublicKeyAlgorithmOID
from marshmallow import RAISE, Schema, ValidationError, fields, post_dump, validate, validates

from service.config import Settings
from service.http.body import json_type

# AWS's rule for template names (CreateProvisioningTemplate: 1-36 of [0-9A-Za-z_-]).
# \Z, not $: $ also matches before a trailing newline.
TEMPLATE_NAME_PATTERN = r"^[0-9A-Za-z_-]{1,36}\Z"
CSR_MAX_CHARS = 16 * 1024
CSR_BEGIN = "-----BEGIN CERTIFICATE REQUEST-----"
# Any PEM private key: "PRIVATE KEY" (PKCS#8), "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY",
# "RSA PRIVATE KEY", "OPENSSH PRIVATE KEY"... Looked for anywhere in the field, broken or not.
_PRIVATE_KEY = re.compile(r"PRIVATE\s+KEY-----", re.IGNORECASE)
_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?\r?\n-----END \1-----", re.DOTALL)
PRIVATE_KEY_SENT = (
    "a private key was sent; it was NOT forwarded to AWS IoT. Treat that key as exposed: make a "
    "new key on the device and send only its certificate signing request"
)
# The device keys AWS IoT accepts in a CSR: RSA of at least 2048 bits, or ECC on NIST P-256, P-384
# or P-521 (AWS IoT developer guide, "X.509 client certificates": supported key algorithms).
MIN_RSA_BITS = 2048
AWS_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
# A CSR's key family, read from its SubjectPublicKeyInfo algorithm before the key is loaded: loading
# or verifying a DSA key warns (deprecated since cryptography 51), and a refused key needs only a name.
_KEY_FAMILIES = {
    PublicKeyAlgorithmOID.RSAES_PKCS1_v1_5: "RSA",
    PublicKeyAlgorithmOID.RSASSA_PSS: "RSA",
    PublicKeyAlgorithmOID.EC_PUBLIC_KEY: "ECC",
    PublicKeyAlgorithmOID.DSA: "DSA",
    PublicKeyAlgorithmOID.ED25519: "Ed25519",
    PublicKeyAlgorithmOID.ED448: "Ed448",
    PublicKeyAlgorithmOID.X25519: "X25519",
    PublicKeyAlgorithmOID.X448: "X448",
}


@dataclass(frozen=True)
class RequestLimits:
    max_parameters: int = 32
    max_key_length: int = 128
    max_value_length: int = 2048

    @classmethod
    def from_settings(cls, settings: Settings) -> RequestLimits:
        return cls(
            max_parameters=settings.max_parameters,
            max_key_length=settings.max_parameter_key_length,
            max_value_length=settings.max_parameter_value_length,
        )


def parse_csr(value: str) -> x509.CertificateSigningRequest:
    """The one PEM certificate signing request in `value`, signed by its own key and for a key
    AWS IoT accepts; else ValidationError. Messages never quote the field."""
    if _PRIVATE_KEY.search(value):
        raise ValidationError(PRIVATE_KEY_SENT)
    if len(value) > CSR_MAX_CHARS:
        raise ValidationError(f"longer than {CSR_MAX_CHARS} characters")
    if CSR_BEGIN not in value:
        raise ValidationError(f"not a valid PEM certificate signing request (no {CSR_BEGIN})")
    blocks = list(_PEM_BLOCK.finditer(value))
    outside = _PEM_BLOCK.sub("", value)
    if len(blocks) != 1 or blocks[0].group(1) != "CERTIFICATE REQUEST" or outside.strip():
        raise ValidationError(
            "must be exactly one PEM certificate signing request (-----BEGIN CERTIFICATE "
            "REQUEST----- ... -----END CERTIFICATE REQUEST-----) and nothing else"
        )
    try:
        csr = x509.load_pem_x509_csr(blocks[0].group(0).encode("ascii"))
        # On the CSR since cryptography 44, though its type stub names it only on Certificate.
        algorithm = csr.public_key_algorithm_oid  # type: ignore[attr-defined]
        family = _KEY_FAMILIES.get(algorithm)
        if family not in ("RSA", "ECC"):
            name = family or f"of the algorithm {algorithm.dotted_string}"
            raise ValidationError(f"the CSR's key is {name}; {_ACCEPTED_KEYS}")
        signed = csr.is_signature_valid
        public_key = csr.public_key()
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise ValidationError("not a valid PEM certificate signing request") from None
    if not signed:
        raise ValidationError(
            "not a valid PEM certificate signing request (its signature does not match its public key)"
        )
    _check_key_size(public_key)
    return csr


_ACCEPTED_KEYS = f"AWS IoT accepts RSA of {MIN_RSA_BITS} bits or more, or ECC on P-256, P-384 or P-521"


def _check_key_size(key: object) -> None:
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValidationError(f"the CSR's key is RSA {key.key_size} bits; {_ACCEPTED_KEYS}")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if key.curve.name not in AWS_CURVES:
            raise ValidationError(f"the CSR's key is ECC on {key.curve.name}; {_ACCEPTED_KEYS}")
        return
    raise ValidationError(f"the CSR's key is {type(key).__name__}; {_ACCEPTED_KEYS}")


class CsrField(fields.String):
    """A CSR, loaded as its re-encoding: what goes to AWS is never the caller's string."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        return parse_csr(text).public_bytes(serialization.Encoding.PEM).decode("ascii")


class ProvisionRequestSchema(Schema):
    class Meta:
        unknown = RAISE

    error_messages = {"unknown": "unknown field (allowed: templateName, parameters, csr)"}

    template_name = fields.String(
        data_key="templateName",
        required=True,
        validate=validate.Regexp(TEMPLATE_NAME_PATTERN, error="must be 1-36 characters of [0-9A-Za-z_-]"),
        metadata={"description": "Fleet provisioning template name"},
    )
    # Checked by hand below so that messages name the parameter instead of nesting errors.
    parameters = fields.Dict(load_default=dict, metadata={"description": "string to string"})
    csr = CsrField(
        load_default=None,
        allow_none=False,
        metadata={"description": "PEM certificate signing request"},
    )

    def __init__(self, *, limits: RequestLimits | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits or RequestLimits()

    @validates("parameters")
    def _check_parameters(self, value: dict[str, Any], **kwargs: Any) -> None:
        limits = self.limits
        problems = []
        if len(value) > limits.max_parameters:
            problems.append(f"at most {limits.max_parameters} parameters are allowed, got {len(value)}")
        for key, item in value.items():
            shown = key if len(key) <= 40 else key[:40] + "..."
            if not key:
                problems.append("a parameter name must not be empty")
            elif len(key) > limits.max_key_length:
                problems.append(f"parameter name {shown!r} is longer than {limits.max_key_length} characters")
            if not isinstance(item, str):
                problems.append(f"parameter {shown!r} must be a string, got {json_type(item)}")
            elif len(item) > limits.max_value_length:
                problems.append(f"parameter {shown!r} is longer than {limits.max_value_length} characters")
            elif _PRIVATE_KEY.search(item):
                # As in `csr`: refused before it reaches AWS, the audit trail or a log.
                problems.append(f"parameter {shown!r}: {PRIVATE_KEY_SENT}")
        if problems:
            raise ValidationError(problems)


class DeviceProvisionRequestSchema(ProvisionRequestSchema):
    """A device caller's body: its group names the template, so templateName may be left out (or
    name one of the templates its CA is registered for)."""

    template_name = fields.String(
        data_key="templateName",
        load_default=None,
        validate=validate.Regexp(TEMPLATE_NAME_PATTERN, error="must be 1-36 characters of [0-9A-Za-z_-]"),
    )


class ProvisionResponseSchema(Schema):
    thing_name = fields.String(data_key="thingName", required=True)
    certificate_id = fields.String(data_key="certificateId", required=True)
    certificate_pem = fields.String(data_key="certificatePem", required=True)
    private_key = fields.String(data_key="privateKey", allow_none=True)
    device_configuration = fields.Dict(
        keys=fields.String(), values=fields.String(), data_key="deviceConfiguration"
    )

    @post_dump
    def _omit_missing_private_key(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # With a caller's CSR the private key never existed here: say nothing rather than null.
        if data.get("privateKey") is None:
            data.pop("privateKey", None)
        return data
