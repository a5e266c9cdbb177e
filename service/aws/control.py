"""AWS IoT's control plane (the HTTPS API boto3 and the AWS CLI call), through botocore.

botocore is already the service's (SigV4 credentials for the MQTT pool), so the control plane
needs nothing more: a low-level botocore client is what boto3's `client("iot")` wraps. Methods are
named after the AWS operations they call and return plain values; botocore's exceptions become
service errors here and nowhere else (service.aws.errors).

Where the client comes from (`ControlPlane.from_settings`):
- credentials: botocore's standard chain (environment, PROVISIONER_AWS_PROFILE or the default
  profile, container or instance role), or the emulator's published test pair in local mode;
- region: PROVISIONER_AWS_REGION, else the data endpoint's (`xxx-ats.iot.<region>.amazonaws.com`),
  else AWS_REGION;
- endpoint: botocore's for the region (`https://iot.<region>.amazonaws.com`), unless
  PROVISIONER_CONTROL_ENDPOINT names another (the emulator's `control` URL in local mode and tests),
  trusted through PROVISIONER_CONTROL_CA_FILE when given.

Retries: botocore's "standard" mode (throttling and transient errors, 4 attempts, jittered), with
bounded connect and read timeouts; a throttle that outlasts them is a 429 with Retry-After.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
)

from service import metrics
from service.aws.errors import ControlPlaneRejected, ControlPlaneUnavailable
from service.config import Settings

log = logging.getLogger("service.aws")

CLIENT_CONFIG = Config(
    retries={"max_attempts": 4, "mode": "standard"},
    connect_timeout=5,
    read_timeout=15,
    user_agent_extra="iot-provisioner",
)
# What the control-plane features need of IAM (docs/lifecycle.md).
IAM_ACTIONS = (
    "iot:DescribeThing",
    "iot:ListThings",
    "iot:ListThingPrincipals",
    "iot:ListPrincipalThings",
    "iot:DescribeCertificate",
    "iot:ListCertificates",
    "iot:UpdateCertificate",
    "iot:DeleteCertificate",
    "iot:CreateCertificateFromCsr",
    "iot:AttachThingPrincipal",
    "iot:DetachThingPrincipal",
    "iot:DeleteThing",
    "iot:ListAttachedPolicies",
    "iot:AttachPolicy",
)
_NOT_FOUND = ("ResourceNotFoundException",)
_CONFLICT = (
    "CertificateStateException",
    "DeleteConflictException",
    "VersionConflictException",
    "ResourceAlreadyExistsException",
    "ConflictException",
    "ConflictingResourceUpdateException",
)
_INVALID = ("InvalidRequestException", "CertificateValidationException", "ValidationException")
_THROTTLED = ("ThrottlingException", "LimitExceededException", "TooManyRequestsException")
# AWS refusing the service's credentials or its permissions: the operator has to fix the setup.
_DENIED = (
    "UnauthorizedException",
    "AccessDeniedException",
    "InvalidSignatureException",
    "UnrecognizedClientException",
    "ExpiredTokenException",
    "MissingAuthenticationTokenException",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
)


@dataclass(frozen=True)
class Thing:
    thing_name: str
    thing_arn: str | None
    thing_type_name: str | None
    attributes: dict[str, str]
    version: int | None


@dataclass(frozen=True)
class Certificate:
    certificate_id: str
    certificate_arn: str
    status: str
    creation_date: datetime | None
    last_modified_date: datetime | None = None
    not_after: datetime | None = None
    certificate_pem: str | None = None


@dataclass(frozen=True)
class Issued:
    """A certificate made by CreateCertificateFromCsr."""

    certificate_id: str
    certificate_arn: str
    certificate_pem: str


@dataclass(frozen=True)
class Target:
    """Where the control plane is and how to sign for it: shown to operators (never a secret)."""

    region: str | None
    endpoint_url: str | None
    ca_file: str | None
    profile: str | None
    static_credentials: tuple[str, str] | None

    def describe(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "endpoint": self.endpoint_url
            or (f"https://iot.{self.region}.amazonaws.com" if self.region else None),
            "credentials": "static (local mode)" if self.static_credentials else "botocore's chain",
        }


def target_of(settings: Settings) -> Target:
    return Target(
        region=settings.region,
        endpoint_url=settings.control_endpoint,
        ca_file=str(settings.control_ca_file) if settings.control_ca_file else None,
        profile=settings.aws_profile,
        static_credentials=settings.static_credentials,
    )


class ControlPlane:
    """One botocore client (thread-safe), made once and shared by a process's threads."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def connect(cls, target: Target) -> ControlPlane:
        """A client for `target`, or ControlPlaneUnavailable saying what is missing."""
        if target.region is None:
            raise ControlPlaneUnavailable(
                "AWS IoT's control plane needs a region: set PROVISIONER_AWS_REGION (or use an AWS "
                "data endpoint, whose host names it). Revoke, suspend, decommission, rotate, the "
                "orphan sweep and reconcile are off until then; provisioning works without it."
            )
        try:
            session = botocore.session.Session(profile=target.profile)
            if target.static_credentials is not None:
                session.set_credentials(*target.static_credentials)
            credentials = session.get_credentials()
        except (ProfileNotFound, PartialCredentialsError, CredentialRetrievalError) as error:
            raise _no_credentials(f"botocore could not read them: {type(error).__name__}") from None
        if credentials is None:
            raise _no_credentials("botocore's chain found none")
        client = session.create_client(
            "iot",
            region_name=target.region,
            endpoint_url=target.endpoint_url,
            verify=target.ca_file if target.ca_file else None,
            config=CLIENT_CONFIG,
        )
        return cls(client)

    # -- things ------------------------------------------------------------------------------

    def describe_thing(self, thing_name: str) -> Thing | None:
        found = self._call("DescribeThing", missing_ok=True, thingName=thing_name)
        return _thing(found) if found is not None else None

    def list_things(self, next_token: str | None, limit: int) -> tuple[list[Thing], str | None]:
        asked: dict[str, Any] = {"maxResults": limit}
        if next_token:
            asked["nextToken"] = next_token
        page = self._call("ListThings", **asked)
        things = [_thing(t) for t in page.get("things", [])]
        return things, page.get("nextToken") or None

    def all_thing_names(self) -> Iterator[str]:
        for page in self._pages("ListThings", "things", maxResults=250):
            for thing in page:
                yield thing["thingName"]

    def thing_principals(self, thing_name: str) -> list[str]:
        """The certificate ARNs attached to a thing (ListThingPrincipals, every page); [] when
        the thing does not exist."""
        return self._every("ListThingPrincipals", "principals", thingName=thing_name)

    def principal_things(self, certificate_arn: str) -> list[str]:
        return self._every("ListPrincipalThings", "things", principal=certificate_arn)

    def attach_thing_principal(self, thing_name: str, certificate_arn: str) -> None:
        self._call("AttachThingPrincipal", thingName=thing_name, principal=certificate_arn)

    def detach_thing_principal(self, thing_name: str, certificate_arn: str) -> None:
        self._call("DetachThingPrincipal", missing_ok=True, thingName=thing_name, principal=certificate_arn)

    def delete_thing(self, thing_name: str) -> None:
        self._call("DeleteThing", missing_ok=True, thingName=thing_name)

    # -- certificates --------------------------------------------------------------------------

    def describe_certificate(self, certificate_id: str) -> Certificate | None:
        found = self._call("DescribeCertificate", missing_ok=True, certificateId=certificate_id)
        if found is None:
            return None
        return _certificate(found["certificateDescription"])

    def all_certificates(self) -> Iterator[Certificate]:
        """Every certificate of the account (ListCertificates, newest first, 250 a page)."""
        for page in self._pages("ListCertificates", "certificates", pageSize=250):
            yield from (_certificate(c) for c in page)

    def update_certificate(self, certificate_id: str, new_status: str) -> None:
        self._call("UpdateCertificate", certificateId=certificate_id, newStatus=new_status)

    def delete_certificate(self, certificate_id: str) -> bool:
        """DeleteCertificate with forceDelete (its policies go with it); False if there was none."""
        done = self._call(
            "DeleteCertificate", missing_ok=True, certificateId=certificate_id, forceDelete=True
        )
        return done is not None

    def create_certificate_from_csr(self, csr_pem: str) -> Issued:
        made = self._call("CreateCertificateFromCsr", certificateSigningRequest=csr_pem, setAsActive=True)
        return Issued(made["certificateId"], made["certificateArn"], made["certificatePem"])

    def attached_policies(self, certificate_arn: str) -> list[str]:
        policies = self._every("ListAttachedPolicies", "policies", target=certificate_arn)
        return [p["policyName"] for p in policies]

    def attach_policy(self, policy_name: str, certificate_arn: str) -> None:
        self._call("AttachPolicy", policyName=policy_name, target=certificate_arn)

    # -- the one place botocore's errors are converted ------------------------------------------

    def _call(self, operation: str, *, missing_ok: bool = False, **asked: Any) -> Any:
        """One operation; with `missing_ok`, None when AWS says the resource does not exist."""
        method = getattr(self._client, _snake(operation))
        with _converted(operation) as call:
            try:
                answer = method(**asked)
            except ClientError as error:
                if not (missing_ok and _code(error) in _NOT_FOUND):
                    raise
                answer = None
            call.result = "ok"
        return answer

    def _pages(self, operation: str, key: str, **asked: Any) -> Iterator[list[Any]]:
        pages = iter(self._client.get_paginator(_snake(operation)).paginate(**asked))
        while True:
            with _converted(operation) as call:
                page = next(pages, None)
                call.result = "ok"
            if page is None:
                return
            yield list(page.get(key, []))

    def _every(self, operation: str, key: str, **asked: Any) -> list[Any]:
        """Every item of every page; [] when the thing or certificate asked about does not exist."""
        try:
            return [item for page in self._pages(operation, key, **asked) for item in page]
        except ControlPlaneRejected as error:
            if error.status == 404:
                return []
            raise


class _Call:
    result = "error"  # what the metrics count: ok, or AWS's error code


@contextmanager
def _converted(operation: str) -> Iterator[_Call]:
    """Counts and times one call to AWS IoT, and turns botocore's errors into the service's."""
    started = time.monotonic()
    call = _Call()
    try:
        yield call
    except ClientError as error:
        call.result = _code(error)
        raise _rejected(operation, error) from None
    except BotoCoreError as error:
        raise _unreachable(operation, error) from None
    finally:
        metrics.control_plane_calls.labels(operation, metrics.error_code_label(call.result)).inc()
        metrics.control_plane_duration.labels(operation).observe(time.monotonic() - started)


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _thing(found: dict[str, Any]) -> Thing:
    """DescribeThing's answer, or a thing of ListThings'."""
    return Thing(
        thing_name=found["thingName"],
        thing_arn=found.get("thingArn"),
        thing_type_name=found.get("thingTypeName"),
        attributes=dict(found.get("attributes") or {}),
        version=found.get("version"),
    )


def _certificate(found: dict[str, Any]) -> Certificate:
    """DescribeCertificate's certificateDescription, or a certificate of ListCertificates' (which
    has no validity, last change or PEM)."""
    validity = found.get("validity") or {}
    return Certificate(
        certificate_id=found["certificateId"],
        certificate_arn=found["certificateArn"],
        status=found["status"],
        creation_date=found.get("creationDate"),
        last_modified_date=found.get("lastModifiedDate"),
        not_after=validity.get("notAfter"),
        certificate_pem=found.get("certificatePem"),
    )


class ControlPlaneHolder:
    """This process's control plane, made on first use. A failure to make one (no credentials) is
    remembered for a while, so a page of calls does not search the credential chain each time
    (botocore asks the instance metadata service last, which takes a second or two off EC2)."""

    RETRY_SECONDS = 30.0

    def __init__(self, target: Target) -> None:
        self.target = target
        self._lock = threading.Lock()
        self._made: ControlPlane | None = None
        self._failed: tuple[float, ControlPlaneUnavailable] | None = None

    def get(self) -> ControlPlane:
        with self._lock:
            if self._made is not None:
                return self._made
            if self._failed is not None and time.monotonic() - self._failed[0] < self.RETRY_SECONDS:
                raise self._failed[1]
            try:
                self._made = ControlPlane.connect(self.target)
            except ControlPlaneUnavailable as error:
                self._failed = (time.monotonic(), error)
                raise
            self._failed = None
            return self._made

    def problem(self) -> str | None:
        """Why the control plane cannot be used, or None when it can (no call is made)."""
        try:
            self.get()
        except ControlPlaneUnavailable as error:
            return error.detail
        return None

    def close(self) -> None:
        with self._lock:
            made, self._made = self._made, None
        if made is not None:
            made._client.close()


def certificate_id_of(arn: str) -> str:
    """`arn:aws:iot:<region>:<account>:cert/<id>` -> <id>."""
    return arn.rsplit("/", 1)[-1]


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _no_credentials(why: str) -> ControlPlaneUnavailable:
    return ControlPlaneUnavailable(
        f"no AWS credentials for AWS IoT's control plane ({why}: environment, "
        "PROVISIONER_AWS_PROFILE or the default profile, container or instance role). Revoke, "
        "suspend, decommission, rotate, the orphan sweep and reconcile need IAM credentials "
        "allowed " + ", ".join(IAM_ACTIONS) + "; provisioning works without them."
    )


def _rejected(operation: str, error: ClientError) -> ControlPlaneRejected | ControlPlaneUnavailable:
    body = error.response.get("Error", {})
    code = _code(error)[:200]
    message = str(body.get("Message", ""))[:1000]
    http_status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if code in _DENIED:
        return ControlPlaneUnavailable(
            f"AWS IoT refused the service's credentials for {operation} ({code}: {message}); check "
            f"the IAM policy of the credentials botocore found (docs/lifecycle.md lists the actions)",
        )
    retry_after = None
    if code in _NOT_FOUND:
        status = 404
    elif code in _CONFLICT:
        status = 409
    elif code in _INVALID:
        status = 422
    elif code in _THROTTLED or http_status == 429:
        status, retry_after = 429, 2
    else:
        status = 502
    log.info("control plane: %s answered %s %s: %s", operation, http_status, code, message)
    return ControlPlaneRejected(
        f"AWS IoT's {operation} answered {code}: {message}",
        status=status,
        error_code=code,
        error_message=message,
        about={"operation": operation},
        retry_after=retry_after,
    )


def _unreachable(operation: str, error: BotoCoreError) -> ControlPlaneUnavailable:
    if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return _no_credentials(f"botocore could not use them: {type(error).__name__}")
    if isinstance(error, NoRegionError):
        return ControlPlaneUnavailable("AWS IoT's control plane needs a region: set PROVISIONER_AWS_REGION")
    # A connection, TLS or timeout failure; botocore's message names the endpoint, never a secret.
    log.warning("control plane: %s failed: %s", operation, error)
    return ControlPlaneUnavailable(
        f"AWS IoT's control plane cannot be reached or did not answer in time ({operation}: "
        f"{type(error).__name__}); retry later",
        retry_after=5,
    )
