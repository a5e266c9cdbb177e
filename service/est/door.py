"""/.well-known/est/[<label>/]<operation>: the EST door's routes (RFC 7030, RFC 8951).

    GET  cacerts          the CA certificates issued certificates chain to (est.settings), no key
    GET  csrattrs         what a CSR should carry (the subject's serialNumber), no key
    POST simpleenroll     a CSR, from an API key's caller or from a device whose certificate
                          (over mutual TLS) a registered device CA issued -> the provision use
                          case -> the certificate
    POST simplereenroll   renew the certificate presented over mutual TLS (est.renewal; an API
                          key renews nothing)
    serverkeygen, fullcmc 501: not offered

Order of checks on an enroll: the credential (401; with no Authorization header, the device
certificate: 403, a refusal of its own type), the label (404), the body (415, 413, 400), the CSR
(400); the rest is the provision use case's, as for POST /provision (a device's CSR must carry a
new key: 422). A request this door
could not read is recorded by the use case too. Every failure is rendered once, as text, by this
blueprint's handlers (est.answers): an EST client gets no problem+json.
"""

from __future__ import annotations

from cryptography import x509
from flask import Blueprint, Flask, Response, current_app, request
from werkzeug.exceptions import ClientDisconnected, HTTPException, RequestEntityTooLarge

from service.callers import presented
from service.callers.devices import load_chain
from service.callers.model import AnyCaller
from service.callers.presented import DeviceCallers
from service.errors import (
    Forbidden,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    ServiceError,
    TemplateNotFound,
)
from service.est import answers, auth, codec, enrollment, renewal
from service.est.settings import EstSettings
from service.lifecycle import Lifecycle
from service.provisioning.request import Arrival
from service.provisioning.use_case import Provisioning

blueprint = Blueprint("est", __name__, url_prefix="/.well-known/est")

OPERATIONS = {"cacerts": "GET", "csrattrs": "GET", "simpleenroll": "POST", "simplereenroll": "POST"}
NOT_OFFERED = ("serverkeygen", "fullcmc")
# Every method, so that a wrong one is this door's 405 (in text), not the app's problem+json.
_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
# What csrattrs asks for: the device's serial number in the subject's serialNumber attribute,
# where a caller with an API key gives the template's SerialNumber (est.enrollment).
CSR_ATTRIBUTES = [x509.ObjectIdentifier("2.5.4.5")]


def init_app(app: Flask, est_settings: EstSettings) -> None:
    app.extensions["est"] = est_settings
    app.register_blueprint(blueprint)


@blueprint.route("/<operation>", methods=_METHODS)
@blueprint.route("/<label>/<operation>", methods=_METHODS)
def operation(operation: str, label: str | None = None) -> Response:
    if operation in NOT_OFFERED:
        return answers.refusal(_not_offered(operation))
    method = OPERATIONS.get(operation)
    if method is None:
        raise NotFound(
            f"EST has no operation {operation[:40]!r} here: cacerts, csrattrs, simpleenroll and "
            "simplereenroll are offered."
        )
    if request.method != method and not (method == "GET" and request.method == "HEAD"):
        raise _wrong_method(method)
    if operation == "cacerts":
        return _cacerts(label)
    if operation == "csrattrs":
        return _csrattrs(label)
    if operation == "simpleenroll":
        return _simpleenroll(label)
    return _simplereenroll(label)


def _cacerts(label: str | None) -> Response:
    if label is not None:
        enrollment.checked_label(label)
    settings: EstSettings = current_app.extensions["est"]
    if not settings.cacerts:
        raise NotFound(
            "No CA certificates are configured for EST: set PROVISIONER_EST_CACERTS_FILE to the "
            "chain the issued certificates chain to."
        )
    return answers.certificates(list(settings.cacerts), codec.CACERTS)


def _csrattrs(label: str | None) -> Response:
    if label is not None:
        enrollment.checked_label(label)
    return answers.csr_attributes(codec.csr_attributes(CSR_ATTRIBUTES))


def _simpleenroll(label: str | None) -> Response:
    provisioning: Provisioning = current_app.extensions["provisioning"]
    arrival = Arrival(answers.request_id(), request.remote_addr)
    caller: AnyCaller | None = None
    try:
        chain = None
        if "Authorization" not in request.headers:  # as on the JSON door: a key, if sent, is who calls
            chain = _devices().presented(request.environ)
        if chain is None:
            key = auth.caller()
            caller = key
            template = enrollment.template_of(label, key)
            csr = _read_csr()
            enrollment.checked_csr(csr)
            parameters = enrollment.parameters_from_csr(csr)
        else:
            # The device's enrollment group gives the template (the label picks one when its CA
            # serves several) and every parameter; the CSR only brings the new key.
            device = _devices().caller(
                chain, template=enrollment.checked_label(label) if label is not None else None
            )
            caller = device
            template = device.identity.template
            csr = _read_csr()
            enrollment.checked_csr(csr)
            parameters = device.identity.parameters_with(None)
        # A retry with the same CSR gets the first certificate back; without a store nothing is
        # kept to replay (and an Idempotency-Key is refused), so none is derived.
        asked = enrollment.provision_request(
            arrival, caller, template, parameters, csr, idempotent=not auth.store().off
        )
    except BaseException as error:
        provisioning.unreadable(arrival, caller, error)
        raise
    try:
        outcome = provisioning.provision(asked)
    except TemplateNotFound as error:
        raise NotFound(f"Unknown EST label {template!r}: {error.detail}") from None
    certificate = x509.load_pem_x509_certificate(outcome.certificate_pem.encode("ascii"))
    return answers.certificates([certificate], codec.CERTS_ONLY, replayed=outcome.replayed)


def _simplereenroll(label: str | None) -> Response:
    if label is not None:
        enrollment.checked_label(label)
    chain = _devices().presented(request.environ)
    if chain is None:
        # The certificate to renew is the one presented over mutual TLS, whoever calls: without
        # one, a client without credentials is challenged as on simpleenroll, one with a key told.
        auth.caller()
        raise Forbidden(
            "simplereenroll renews the certificate the client presents over mutual TLS, and this "
            "request presented none; an API key renews no certificate (an operator rotates a "
            "device's certificate with POST /admin/devices/<thing>/rotate).",
            rule="certificate-required",
        )
    current = load_chain(chain)[0]
    csr = _read_csr()
    enrollment.checked_csr(csr)
    lifecycle: Lifecycle = current_app.extensions["lifecycle"]
    renewed = renewal.renew(lifecycle, current, csr, request_id=answers.request_id())
    certificate = x509.load_pem_x509_certificate(renewed.certificate_pem.encode("ascii"))
    return answers.certificates([certificate], codec.CERTS_ONLY, replayed=renewed.replayed)


def _devices() -> DeviceCallers:
    found: DeviceCallers = current_app.extensions[presented.EXTENSION]
    return found


def _read_csr() -> x509.CertificateSigningRequest:
    """The body as codec reads it, read no further than EST's limit."""
    content_type = request.headers.get("Content-Type")
    length = request.content_length
    if length is not None and length > codec.MAX_BODY_BYTES:
        raise PayloadTooLarge(f"the body is {length} bytes; a PKCS#10 is at most {codec.MAX_BODY_BYTES}")
    request.max_content_length = codec.MAX_BODY_BYTES + 1
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:  # a chunked body, which declares no length
        raise PayloadTooLarge(f"the body is larger than {codec.MAX_BODY_BYTES} bytes") from None
    except (OSError, ValueError, ClientDisconnected):
        raise InvalidInput(
            "the body could not be read as sent (malformed chunked encoding, or cut short)"
        ) from None
    return codec.read_pkcs10(body, content_type)


def _not_offered(operation: str) -> ServiceError:
    error = ServiceError(
        f"This EST server does not offer {operation}: the private key is made on the device "
        "(send a CSR to simpleenroll), and full CMC is not spoken."
    )
    error.status = 501
    error.title = "Not implemented"
    return error


def _wrong_method(method: str) -> MethodNotAllowed:
    return MethodNotAllowed(f"{request.method} is not allowed here; this EST operation takes {method}.")


@blueprint.errorhandler(ServiceError)
def _refused(error: ServiceError) -> Response:
    response = answers.refusal(error)
    if isinstance(error, MethodNotAllowed):
        operation = (request.view_args or {}).get("operation", "")
        allowed = OPERATIONS.get(str(operation), "GET")
        response.headers["Allow"] = f"{allowed}, HEAD" if allowed == "GET" else allowed
    return response


@blueprint.errorhandler(HTTPException)
def _http_refused(error: HTTPException) -> Response:
    # What werkzeug raises around a view of this blueprint (413 past max_content_length).
    code = error.code or 500
    if code == 413:
        refused: ServiceError = PayloadTooLarge(f"the body is larger than {codec.MAX_BODY_BYTES} bytes")
    else:
        refused = ServiceError(error.description or error.name)
        refused.status = code
    return answers.refusal(refused)


@blueprint.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    # A bug: the traceback goes to the log, the client gets a 500 and the request id.
    answers.log.error(
        "unexpected error in EST %s (request_id=%s)", request.method, answers.request_id(), exc_info=error
    )
    return answers.refusal(
        ServiceError("The service failed unexpectedly; the error is logged under this request id.")
    )
