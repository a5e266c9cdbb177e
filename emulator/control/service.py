"""The control plane as one application: authenticate, route, run the handler, render.

AWS IoT's control plane is rest-json (botocore's model, protocol `rest-json`, signing name
`iot`). Answers are JSON; an error is its HTTP status, the error code in the `x-amzn-ErrorType`
header (botocore reads the code from there) and `{"message": ...}` in the body. Every error is
rendered here and only here.

Authentication comes first, as at AWS's door: an unsigned or badly signed request learns nothing
about paths. What AWS answers for a bad signature was seen in the field for AWS IoT's control
plane (403 InvalidSignatureException, "The request signature we calculated does not match...");
the codes for an unknown key and a missing signature are AWS's usual ones and unconfirmed for
AWS IoT, so they are `ErrorCodes` settings.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import UTC, datetime
from http import HTTPStatus
from typing import Any

from emulator.config import EmulatorConfig
from emulator.control.account import Account
from emulator.control.http import HttpRequest, HttpResponse
from emulator.control.inputs import Call
from emulator.control.routes import match
from emulator.errors import (
    AuthError,
    ControlError,
    MissingAuthentication,
    NotAuthenticated,
    UnknownAccessKey,
)
from emulator.registry import Registry
from emulator.security.pki import CertificateAuthority
from emulator.security.sigv4 import CONTROL_SERVICE, Identity, verify_signed_request

log = logging.getLogger("emulator.control")

SIGNATURE_MISMATCH = (
    "The request signature we calculated does not match the signature you provided. Check your AWS "
    "Secret Access Key and signing method. Consult the service documentation for details."
)
# Codes of requests refused before they were read whole (the emulator's own choice: AWS's front
# door answers these itself, in ways nobody has recorded).
_REFUSAL_CODES: dict[int, str] = {
    HTTPStatus.REQUEST_ENTITY_TOO_LARGE: "RequestEntityTooLargeException",
    HTTPStatus.REQUEST_TIMEOUT: "RequestTimeoutException",
    HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE: "RequestHeaderFieldsTooLargeException",
}


class ControlPlane:
    def __init__(self, config: EmulatorConfig, registry: Registry, authority: CertificateAuthority) -> None:
        self.config = config
        self.registry = registry
        self.account = Account(config, registry, authority)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        operation = "-"
        try:
            identity = self._authenticate(request)
            route, labels = match(request.method, request.target.partition("?")[0])
            operation = route.operation
            call = Call.read(operation, labels, request, identity.region)
            # AWS deletes unredeemed Create* certificates after the token's hour; no listing may
            # show one past it, whenever the sweeper last ran.
            self.registry.expire_pending()
            answer = route.handler(self.account, call)
            response = _json(HTTPStatus.OK, answer)
        except ControlError as exc:
            response = self.render(exc)
        except Exception:  # a bug of ours: AWS's shape for it, and the trace in the log
            log.exception("control plane: %s %s failed", request.method, request.target[:200])
            response = self.render(
                ControlError(
                    "the emulator failed to process the request", status=500, code="InternalFailureException"
                )
            )
        log.info(
            "control plane: %s %s %s -> %d%s (%.1f ms)",
            request.peer,
            operation,
            request.method,
            response.status,
            f" {_error_type(response)}" if response.status >= 400 else "",
            (time.perf_counter() - started) * 1000,
        )
        return response

    def refuse(self, status: int, message: str) -> HttpResponse:
        code = _REFUSAL_CODES.get(status, "InvalidRequestException")
        return self.render(ControlError(message, status=status, code=code))

    def render(self, error: ControlError) -> HttpResponse:
        return _json(error.status, {"message": error.message}, [("x-amzn-ErrorType", error.code)])

    def _authenticate(self, request: HttpRequest) -> Identity:
        codes = self.config.error_codes
        try:
            return verify_signed_request(
                request.method,
                request.target,
                request.headers,
                request.body,
                self.config.credentials,
                now=datetime.fromtimestamp(self.config.clock(), UTC),
                service=CONTROL_SERVICE,
            )
        except MissingAuthentication:
            status, code = codes.missing_authentication
            raise NotAuthenticated("Missing Authentication Token", status=status, code=code) from None
        except UnknownAccessKey:
            status, code = codes.unrecognized_client
            raise NotAuthenticated(
                "The security token included in the request is invalid.", status=status, code=code
            ) from None
        except AuthError as exc:
            status, code = codes.invalid_signature
            raise NotAuthenticated(f"{SIGNATURE_MISMATCH} ({exc})", status=status, code=code) from None


def _json(
    status: int, body: dict[str, Any] | None, headers: list[tuple[str, str]] | None = None
) -> HttpResponse:
    # Operations without an output shape (UpdateCertificate, DeleteCertificate...) answer an
    # empty body; the others a JSON object.
    data = b"" if body is None else json.dumps(body).encode()
    return HttpResponse(
        status=int(status),
        body=data,
        headers=[("x-amzn-RequestId", str(uuid.uuid4())), *(headers or [])],
    )


def _error_type(response: HttpResponse) -> str:
    return next((value for name, value in response.headers if name == "x-amzn-ErrorType"), "")
