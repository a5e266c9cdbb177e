"""Wire shapes of the admin API (marshmallow 4): keys, enrollments, audit queries."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates

from service.callers import rules
from service.callers.devices.certificates import MAX_CRL_REQUEST_BYTES
from service.callers.model import ROLES

TEMPLATE_NAME = validate.Regexp(r"^[0-9A-Za-z_-]{1,36}\Z", error="must be 1-36 characters of [0-9A-Za-z_-]")
# strict: 1.5 is refused, not truncated to 1 (a quota of 1.5 provisions has no meaning).
WHOLE_NUMBER: dict[str, str | list[Any] | dict[Any, Any]] = {"invalid": "must be a whole number"}


class StrictBoolean(fields.Boolean):
    """true or false, nothing else: marshmallow's Boolean also takes 0, 1, "yes", "on"..."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class UtcDateTime(fields.AwareDateTime):
    """An RFC 3339 time with a zone, loaded in UTC: one outside the years 1-9999 there is refused
    here, not when the store converts it."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise ValidationError("must be a time between the years 1 and 9999 in UTC") from None


def _limit(name: str, high: int, **default: Any) -> fields.Integer:
    return fields.Integer(
        data_key=name,
        **default,
        allow_none=True,
        strict=True,
        validate=validate.Range(1, high),
        error_messages=WHOLE_NUMBER,
    )


class KeyCreateSchema(Schema):
    class Meta:
        unknown = RAISE

    name = fields.String(load_default="", validate=validate.Length(max=200))
    role = fields.String(load_default="provision", validate=validate.OneOf(ROLES))
    templates = fields.List(fields.String(validate=TEMPLATE_NAME), load_default=None, allow_none=True)
    parameter_rules = fields.Dict(
        data_key="parameterRules",
        keys=fields.String(validate=validate.Length(1, 128)),
        values=fields.String(),
        load_default=dict,
    )
    server_keys = StrictBoolean(data_key="serverKeys", load_default=True)
    enrolled_only = StrictBoolean(data_key="enrolledOnly", load_default=False)
    expires_at = UtcDateTime(data_key="expiresAt", load_default=None, allow_none=True)
    max_provisions = _limit("maxProvisions", 10**9, load_default=None)
    rate_per_minute = _limit("ratePerMinute", 10**6, load_default=None)

    @validates("expires_at")
    def _check_expiry(self, value: datetime | None, **kwargs: Any) -> None:
        if value is not None and value <= datetime.now(UTC):
            raise ValidationError("must be in the future: a key that expired before it was made never works")

    @validates("parameter_rules")
    def _check_rules(self, value: dict[str, str], **kwargs: Any) -> None:
        # Rules run on RE2 (linear time): one it cannot run is refused here, with why.
        broken = rules.problems(value)
        if broken:
            raise ValidationError([f"rule for {n!r} cannot be used: {why}" for n, why in broken.items()])


class EnrollmentSchema(Schema):
    class Meta:
        unknown = RAISE

    template = fields.String(required=True, validate=TEMPLATE_NAME)
    parameter = fields.String(load_default="SerialNumber", validate=validate.Length(1, 128))
    value = fields.String(required=True, validate=validate.Length(1, 2048))
    enabled = StrictBoolean(load_default=True)
    reprovision = fields.String(load_default="once", validate=validate.OneOf(("once", "allow")))


class PageSchema(Schema):
    class Meta:
        unknown = RAISE

    limit = fields.Integer(load_default=100, validate=validate.Range(1, 1000))


class EnrollmentQuerySchema(PageSchema):
    template = fields.String(load_default=None, validate=TEMPLATE_NAME)
    # Cursors are row ids: bounded by their columns (a 32-bit id here, 64-bit for registrations).
    after = fields.Integer(load_default=0, validate=validate.Range(0, 2**31 - 1))


class ImportQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    template = fields.String(required=True, validate=TEMPLATE_NAME)
    parameter = fields.String(load_default="SerialNumber", validate=validate.Length(1, 128))


class RegistrationQuerySchema(PageSchema):
    since = UtcDateTime(load_default=None)
    until = UtcDateTime(load_default=None)
    key_id = fields.String(data_key="keyId", load_default=None)
    template = fields.String(load_default=None)
    thing_name = fields.String(data_key="thingName", load_default=None)
    outcome = fields.String(
        load_default=None, validate=validate.OneOf(("provisioned", "refused", "failed", "replayed"))
    )
    device_ca_id = fields.String(data_key="deviceCaId", load_default=None)
    device_fingerprint = fields.String(data_key="deviceFingerprint", load_default=None)
    before = fields.Integer(load_default=None, validate=validate.Range(1, 2**63 - 1))


class DeviceCaChangeSchema(Schema):
    """What may change on a registered device CA (its certificate and template stay)."""

    class Meta:
        unknown = RAISE

    name = fields.String(validate=validate.Length(max=200))
    # Checked in full by service.callers.devices.parameters (422 naming parameters.<name>).
    parameters = fields.Dict(keys=fields.String(), values=fields.Raw())
    reprovision = fields.String(validate=validate.OneOf(("once", "allow")))
    enabled = StrictBoolean()
    max_chain_depth = fields.Integer(
        data_key="maxChainDepth", strict=True, validate=validate.Range(0, 8), error_messages=WHOLE_NUMBER
    )
    max_provisions = _limit("maxProvisions", 2**31 - 1)
    rate_per_minute = _limit("ratePerMinute", 2**31 - 1)


class DeviceCaCreateSchema(DeviceCaChangeSchema):
    template = fields.String(required=True, validate=TEMPLATE_NAME)
    certificates = fields.String(required=True, validate=validate.Length(1, 65536))
    name = fields.String(load_default="", validate=validate.Length(max=200))
    parameters = fields.Dict(keys=fields.String(), values=fields.Raw(), load_default=dict)
    reprovision = fields.String(load_default="once", validate=validate.OneOf(("once", "allow")))
    enabled = StrictBoolean(load_default=True)
    max_chain_depth = fields.Integer(
        data_key="maxChainDepth",
        load_default=2,
        strict=True,
        validate=validate.Range(0, 8),
        error_messages=WHOLE_NUMBER,
    )
    max_provisions = _limit("maxProvisions", 2**31 - 1, load_default=None)
    rate_per_minute = _limit("ratePerMinute", 2**31 - 1, load_default=None)


class DeviceCaQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    template = fields.String(load_default=None, validate=TEMPLATE_NAME)


class BlockSchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(("serial", "fingerprint")))
    value = fields.String(required=True, validate=validate.Length(1, 256))
    reason = fields.String(load_default="", validate=validate.Length(max=200))


class BlockQuerySchema(Schema):
    class Meta:
        unknown = RAISE

    kind = fields.String(required=True, validate=validate.OneOf(("serial", "fingerprint")))
    value = fields.String(required=True, validate=validate.Length(1, 256))


class CrlSchema(Schema):
    class Meta:
        unknown = RAISE

    # PEM, or the DER in base64 (JSON carries no bytes); at most 8 MiB of DER.
    crl = fields.String(required=True, validate=validate.Length(1, MAX_CRL_REQUEST_BYTES))
