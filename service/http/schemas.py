"""The wire shapes of `POST /provision` (marshmallow 4): AWS camelCase outside, snake_case inside.

Every rule here is also written in `openapi.yaml`; the bounds on `parameters` come from settings,
so the request schema takes them in its constructor (`ProvisionRequestSchema(limits=...)`).
Errors are keyed by the wire name of the field (`templateName`, `parameters`, `csr`, or the unknown
field itself), each with a list of sentences.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from marshmallow import RAISE, Schema, ValidationError, fields, post_dump, validate, validates

from service.http.body import json_type

# AWS's rule for template names (reference, section 1). \Z, not $: $ also matches before a
# trailing newline.
TEMPLATE_NAME_PATTERN = r"^[0-9A-Za-z_-]{1,36}\Z"
CSR_MAX_CHARS = 16 * 1024
CSR_BEGIN = "-----BEGIN CERTIFICATE REQUEST-----"


@dataclass(frozen=True)
class RequestLimits:
    max_parameters: int = 32
    max_key_length: int = 128
    max_value_length: int = 2048

    @classmethod
    def from_settings(cls, settings: Any) -> RequestLimits:
        return cls(
            max_parameters=settings.max_parameters,
            max_key_length=settings.max_parameter_key_length,
            max_value_length=settings.max_parameter_value_length,
        )


def check_csr(value: str) -> None:
    """Raise unless `value` is one PEM certificate signing request signed by its own key."""
    if len(value) > CSR_MAX_CHARS:
        raise ValidationError(f"longer than {CSR_MAX_CHARS} characters")
    if CSR_BEGIN not in value:
        raise ValidationError(f"not a valid PEM certificate signing request (no {CSR_BEGIN})")
    try:
        csr = x509.load_pem_x509_csr(value.encode("ascii"))
        signed = csr.is_signature_valid
    except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm):
        raise ValidationError("not a valid PEM certificate signing request") from None
    if not signed:
        raise ValidationError(
            "not a valid PEM certificate signing request (its signature does not match its public key)"
        )


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
    csr = fields.String(
        load_default=None,
        allow_none=False,
        validate=check_csr,
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
        if problems:
            raise ValidationError(problems)


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
