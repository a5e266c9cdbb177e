"""Errors of the emulator, one tree, rendered in one place each.

    EmulatorError
    ├── ConfigError            bad settings or files at start (CLI prints it, exits 2)
    ├── AuthError              refused at the door (SigV4 on the WebSocket upgrade or a control-plane
    │   │                      request, TLS client cert)
    │   ├── UnknownAccessKey       the access key id is none of the emulator's credentials
    │   └── MissingAuthentication  a control-plane request with no signature at all
    └── AwsRefusal             what AWS would refuse: a status and AWS's error code (`.status`, `.code`)
        ├── ControlError           a control-plane request AWS would refuse: rendered once, in
        │   │                      emulator/control/service.py, as the HTTP status, `x-amzn-ErrorType` and
        │   │                      `{"message": ...}`; the registry raises the ones about AWS's rules
        │   ├── ResourceNotFound       404 ResourceNotFoundException
        │   ├── InvalidControlRequest  400 InvalidRequestException (bad input, a rule of the request)
        │   ├── CertificateState       406 CertificateStateException (REVOKED is final, ACTIVE not deletable)
        │   ├── DeleteConflict         409 DeleteConflictException (still attached)
        │   ├── VersionConflict        409 VersionConflictException (DeleteThing's expectedVersion)
        │   └── NotAuthenticated       403, the code by what failed (InvalidSignatureException, ...)
        └── ProvisioningError      a fleet-provisioning request AWS would reject: becomes the
            │                      `{statusCode, errorCode, errorMessage}` payload on `.../rejected`
            ├── InvalidRequest         400, malformed payload, wrong types, bad CSR
            ├── InvalidToken           400 InvalidCertificateOwnershipToken
            ├── TemplateNotFound       404 ResourceNotFoundException (code unconfirmed, configurable)
            ├── TemplateError          400 InvalidParameterException: the template cannot be evaluated,
            │                          or a name or value breaks AWS's rules (emulator.fleet.naming)
            ├── ResourceConflict       409 ResourceConflictsException (OverrideSettings FAIL)
            ├── AccessDenied           403 ACCESS_DENIED (pre-provisioning hook said no or failed)
            └── Throttled              429 ThrottlingException (code unconfirmed, configurable)

Malformed or forbidden MQTT from a client is `emulator.mqtt.errors.ProtocolError`, the broker's own
(the MQTT package imports nothing from the emulator around it): the connection is closed.

Messages never contain private keys or ownership tokens.
"""

from __future__ import annotations


class EmulatorError(Exception):
    """Base of every error the emulator raises on purpose."""


class ConfigError(EmulatorError):
    """The emulator's configuration, data or template files are unusable."""


class AuthError(EmulatorError):
    """A client failed authentication (SigV4 presigned URL, TLS client certificate)."""


class UnknownAccessKey(AuthError):
    """The signature names an access key id the emulator was not given."""


class MissingAuthentication(AuthError):
    """No Authorization header (nor presigned query) at all."""


class AwsRefusal(EmulatorError):
    """A request AWS would refuse: an HTTP-like status and AWS's error code, besides the message.

    Each subclass names its status and code; one refusal may carry others (the configurable error
    codes of unconfirmed AWS behaviours)."""

    status = 400
    code = "InvalidRequestException"

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code


class ControlError(AwsRefusal):
    """A control-plane request is refused; rendered as AWS's rest-json error."""


class ResourceNotFound(ControlError):
    status = 404
    code = "ResourceNotFoundException"


class InvalidControlRequest(ControlError):
    status = 400
    code = "InvalidRequestException"


class CertificateState(ControlError):
    status = 406
    code = "CertificateStateException"


class DeleteConflict(ControlError):
    status = 409
    code = "DeleteConflictException"


class VersionConflict(ControlError):
    status = 409
    code = "VersionConflictException"


class NotAuthenticated(ControlError):
    status = 403
    code = "InvalidSignatureException"


class ProvisioningError(AwsRefusal):
    """A fleet-provisioning request is rejected; rendered as the AWS rejected payload."""

    code = "InvalidRequest"

    def payload(self) -> dict[str, object]:
        return {"statusCode": self.status, "errorCode": self.code, "errorMessage": self.message}


class InvalidRequest(ProvisioningError):
    status = 400
    code = "InvalidRequest"


class InvalidToken(ProvisioningError):
    # The one pair confirmed from the field (seen from AWS IoT in the field).
    status = 400
    code = "InvalidCertificateOwnershipToken"


class TemplateNotFound(ProvisioningError):
    status = 404
    code = "ResourceNotFoundException"


class TemplateError(ProvisioningError):
    status = 400
    code = "InvalidParameterException"


class ResourceConflict(ProvisioningError):
    status = 409
    code = "ResourceConflictsException"


class AccessDenied(ProvisioningError):
    status = 403
    code = "ACCESS_DENIED"


class Throttled(ProvisioningError):
    status = 429
    code = "ThrottlingException"
