"""Errors of the provisioning service, one tree, rendered once as RFC 9457 problem+json.

    ServiceError                       500 never rendered as a bare page
    ├── InvalidInput                   400 (malformed body) / 422 (well-formed body breaking a rule)
    │   └── OperationalKeyReused       422 the CSR carries the device certificate's own key
    ├── PayloadTooLarge                413 body over PROVISIONER_MAX_BODY_BYTES
    ├── UnsupportedMediaType           415 body is not application/json
    ├── Unauthorized                   401 missing, unknown, revoked or expired API key
    ├── Forbidden                      403 the caller's scope or an enrollment refuses (names the rule)
    ├── DeviceRefused                  403 a device certificate does not attest (service.callers.devices);
    │   │                              each refusal its own type:
    │   ├── UnknownDeviceCa            no registered device CA issued it (or its chain does not verify)
    │   ├── DeviceCertificateExpired   past its notAfter (the device's, or a CA's in its chain)
    │   ├── DeviceCertificateNotYetValid  before its notBefore
    │   ├── DeviceBlocked              its serial or fingerprint is on the CA's block list
    │   ├── DeviceRevoked              the CA's CRL lists it (or a CA in its chain)
    │   ├── DeviceWrongUsage           an EKU without clientAuth, a key usage without digitalSignature
    │   ├── DeviceChainTooLong         more CAs than the group allows, or a CA's pathLen exceeded
    │   ├── DeviceChainInvalid         malformed, a forbidden algorithm or weak key, a CA as a device
    │   ├── DeviceGroupDisabled        its enrollment group (device CA) is disabled
    │   ├── DeviceGroupAmbiguous       its CA serves several templates and none was named
    │   └── DeviceParameterMissing     the certificate lacks what a template parameter comes from
    ├── AlreadyProvisioned             409 a 'once' enrollment was provisioned (names the thing)
    ├── IdempotencyConflict            409 the first request with this Idempotency-Key still runs
    ├── IdempotencyMismatch            422 this Idempotency-Key was used with another body
    ├── KeyNotReplayable               410 replay of a server-key provision: the key is not kept
    ├── RateLimited                    429 + Retry-After: the caller's key is over its rate
    ├── PaceExceeded                   429 + Retry-After: no slot under PROVISIONER_AWS_MAX_RATE
    │                                  before the request's deadline
    ├── NotFound / MethodNotAllowed    404 / 405 for routes
    ├── AwsRejected                    AWS IoT answered an error: its errorCode and errorMessage
    │   │                              passed through
    │   ├── ProvisioningRejected       AWS answered on .../rejected: 4xx passed through, 5xx from
    │   │   │                          AWS becomes 502 (provisioning.answers.rejection decides)
    │   │   ├── TemplateNotFound       404 unknown template
    │   │   └── Throttled              429 with Retry-After
    │   └── ControlPlaneRejected       404/409/422/429/502: the control plane refused (in
    │                                  service/aws/errors.py, raised only by service.aws.control,
    │                                  which converts botocore's)
    ├── PoolExhausted                  503 + Retry-After: no free connection within the wait limit
    ├── BrokerUnavailable              503 + Retry-After: cannot connect / subscribe to the broker
    ├── StoreUnavailable               503 + Retry-After: the database cannot be reached
    │   └── StoreConflict              the database undid the transaction to break a deadlock (or a
    │                                  serialization failure): nothing kept, safe to run again
    ├── ControlPlaneUnavailable        503: AWS IoT's control plane cannot be used or reached
    │                                  (service/aws/errors.py)
    ├── UpstreamTimeout                504: our own deadline passed
    └── UpstreamInvalid                502: AWS's answer is unusable (bad JSON, unparseable certificate)
        └── AnswerUnproven             502 + Retry-After: an answer on the connection could not be
                                       proven to be this request's; nothing was handed out

Only the MQTT boundary turns paho return codes and timeouts into these; views raise them; one
handler in `service.http.problems` renders them. Messages never contain keys, tokens or credentials.
"""

from __future__ import annotations

from typing import Any

PROBLEM_BASE = "https://iot-provisioner.dev/problems/"


class ServiceError(Exception):
    status = 500
    slug = "internal-error"
    title = "Internal error"

    def __init__(
        self,
        detail: str,
        *,
        step: str | None = None,
        extra: dict[str, Any] | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.step = step
        self.extra = dict(extra or {})
        self.retry_after = retry_after

    def problem(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if self.step:
            body["step"] = self.step
        body.update(self.extra)
        return body


class InvalidInput(ServiceError):
    status = 400
    slug = "invalid-input"
    title = "Invalid request"

    def __init__(self, detail: str, *, errors: dict[str, Any] | None = None, status: int = 400) -> None:
        super().__init__(detail, extra={"errors": errors} if errors else None)
        self.status = status

    @classmethod
    def broken_rules(cls, errors: dict[str, list[str]]) -> InvalidInput:
        """A 422 naming every broken rule: {field: [sentences]}."""
        summary = "; ".join(f"{field}: {' '.join(messages)}" for field, messages in errors.items())
        return cls(f"The request breaks {len(errors)} rule(s): {summary}", errors=errors, status=422)


class OperationalKeyReused(InvalidInput):
    """A CSR for an attested device carrying its device certificate's (IDevID's) public key: the
    operational key must be a new one, so that the factory identity never becomes the one in use."""

    slug = "operational-key-reused"
    title = "The CSR must carry a new key, not the device certificate's"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, errors={"csr": [detail]}, status=422)


class PayloadTooLarge(ServiceError):
    status = 413
    slug = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(ServiceError):
    status = 415
    slug = "unsupported-media-type"
    title = "Unsupported media type"


class Unauthorized(ServiceError):
    status = 401
    slug = "unauthorized"
    title = "Missing or invalid API key"


class Forbidden(ServiceError):
    status = 403
    slug = "forbidden"
    title = "Not allowed for this API key"

    def __init__(self, detail: str, *, rule: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra={"rule": rule, **(extra or {})})
        self.rule = rule


class DeviceRefused(ServiceError):
    """A device certificate that does not attest, with why as its type. `certificate` describes
    the presented device certificate (issuer, serial, SHA-256 fingerprint; never a key) for the
    audit trail, when it could be read."""

    status = 403
    slug = "device-refused"
    title = "The device certificate is not accepted"

    def __init__(self, detail: str, *, certificate: Any = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail, extra=extra)
        self.certificate = certificate


class UnknownDeviceCa(DeviceRefused):
    slug = "device-unknown-ca"
    title = "No registered device CA issued this certificate"


class DeviceCertificateExpired(DeviceRefused):
    slug = "device-certificate-expired"
    title = "A certificate of the device's chain has expired"


class DeviceCertificateNotYetValid(DeviceRefused):
    slug = "device-certificate-not-yet-valid"
    title = "A certificate of the device's chain is not valid yet"


class DeviceBlocked(DeviceRefused):
    slug = "device-blocked"
    title = "This device is blocked"


class DeviceRevoked(DeviceRefused):
    slug = "device-revoked"
    title = "The manufacturer revoked this certificate"


class DeviceWrongUsage(DeviceRefused):
    slug = "device-wrong-usage"
    title = "The device certificate is not for client authentication"


class DeviceChainTooLong(DeviceRefused):
    slug = "device-chain-too-long"
    title = "The device's certificate chain is too long"


class DeviceChainInvalid(DeviceRefused):
    slug = "device-chain-invalid"
    title = "The device's certificate chain is not valid"


class DeviceGroupDisabled(DeviceRefused):
    slug = "device-group-disabled"
    title = "The device's enrollment group is disabled"


class DeviceGroupAmbiguous(DeviceRefused):
    slug = "device-group-ambiguous"
    title = "The device's CA serves several templates: name one"


class DeviceParameterMissing(DeviceRefused):
    slug = "device-parameter-missing"
    title = "The device certificate lacks a value a template parameter comes from"


class AlreadyProvisioned(ServiceError):
    status = 409
    slug = "already-provisioned"
    title = "This device was already provisioned (or is being provisioned)"


class IdempotencyConflict(ServiceError):
    status = 409
    slug = "idempotency-in-progress"
    title = "A request with this Idempotency-Key is still running"


class IdempotencyMismatch(ServiceError):
    status = 422
    slug = "idempotency-key-reused"
    title = "This Idempotency-Key was used with a different request"


class KeyNotReplayable(ServiceError):
    status = 410
    slug = "private-key-not-replayable"
    title = "The identity was issued; its private key cannot be shown again"


class RateLimited(ServiceError):
    status = 429
    slug = "rate-limited"
    title = "This API key is over its request rate"


class PaceExceeded(ServiceError):
    """The account-wide pace (PROVISIONER_AWS_MAX_RATE) has no slot for this request in time."""

    status = 429
    slug = "aws-pace"
    title = "The service's rate of calls to AWS IoT is fully booked"


class NotFound(ServiceError):
    status = 404
    slug = "not-found"
    title = "Not found"


class MethodNotAllowed(ServiceError):
    status = 405
    slug = "method-not-allowed"
    title = "Method not allowed"


class AwsRejected(ServiceError):
    """AWS IoT answered with an error: its `errorCode` and `errorMessage` are passed through, after
    what says where (`about`). The status is decided where AWS's answer is converted."""

    def __init__(
        self,
        detail: str,
        *,
        status: int,
        error_code: str,
        error_message: str,
        about: dict[str, Any],
        step: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        extra = {**about, "errorCode": error_code, "errorMessage": error_message}
        super().__init__(detail, step=step, extra=extra, retry_after=retry_after)
        self.status = status
        self.error_code = error_code


class ProvisioningRejected(AwsRejected):
    """AWS IoT published on a `.../rejected` topic; its three fields are passed through.

    The HTTP status is decided by `service.provisioning.answers.rejection`, the one mapping.
    """

    slug = "aws-rejected"
    title = "AWS IoT rejected the request"


class TemplateNotFound(ProvisioningRejected):
    slug = "template-not-found"
    title = "Provisioning template not found"


class Throttled(ProvisioningRejected):
    slug = "throttled"
    title = "AWS IoT throttled the request"


class PoolExhausted(ServiceError):
    status = 503
    slug = "no-free-connection"
    title = "All MQTT connections are busy"


class BrokerUnavailable(ServiceError):
    status = 503
    slug = "broker-unavailable"
    title = "AWS IoT cannot be reached"


class StoreUnavailable(ServiceError):
    status = 503
    slug = "store-unavailable"
    title = "The service's database cannot be reached"


class StoreConflict(StoreUnavailable):
    """PostgreSQL undid a transaction (a deadlock with another one, or a serialization failure):
    nothing of it was kept, so the same transaction may simply run again."""


class UpstreamTimeout(ServiceError):
    status = 504
    slug = "upstream-timeout"
    title = "AWS IoT did not answer in time"


class UpstreamInvalid(ServiceError):
    status = 502
    slug = "upstream-invalid"
    title = "AWS IoT answered with something unusable"


class AnswerUnproven(UpstreamInvalid):
    """An answer that may belong to another request (docs/correlation.md); safe to retry."""

    slug = "answer-unproven"
    title = "AWS IoT's answer could not be proven to be this request's"
