"""Errors of the provisioner client, one tree; a problem+json answer becomes one of them in `from_problem`.

    ProvisionerError                    any answer that is not a 201, or no answer at all
    ├── InvalidRequestError             400 / 404 / 413 / 415 / 422 (and other 4xx): the request is wrong
    ├── AuthenticationError             401 the API key is missing, unknown, revoked or expired
    ├── ForbiddenError                  403 the key's scope or an enrollment refuses (.rule says which)
    ├── AlreadyProvisionedError         409 the device was provisioned (.thing_name), or is right now
    ├── IdempotencyConflict             409 the first request with this Idempotency-Key still runs
    ├── KeyNotReplayableError           410 replay of a server-key provision: the key is not kept
    ├── RateLimitedError                429 the key's rate, or AWS IoT throttling (.retry_after)
    ├── ServiceUnavailableError         500 / 502 / 503 / 504 the service or AWS IoT failed
    └── TransportError                  no HTTP answer: connection refused, reset, timed out

Every error carries what the service said (status, type, title, detail, step, aws_error_code, rule,
request_id, retry_after); `str(error)` is a sentence a person can act on. Nothing here ever holds
the API key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

PROBLEM_BASE = "https://iot-provisioner.dev/problems/"


class ProvisionerError(Exception):
    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        type: str | None = None,
        title: str | None = None,
        step: str | None = None,
        aws_error_code: str | None = None,
        rule: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
        problem: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.type = type
        self.title = title
        self.step = step
        self.aws_error_code = aws_error_code
        self.rule = rule
        self.request_id = request_id
        self.retry_after = retry_after
        self.problem: dict[str, Any] = dict(problem or {})

    @property
    def slug(self) -> str:
        """The problem type's last path segment (`rate-limited`, `throttled`...), or ""."""
        return (self.type or "").rstrip("/").rsplit("/", 1)[-1]

    def __str__(self) -> str:
        prefix = f"{self.status} " if self.status else ""
        title = f"{self.title}: " if self.title and self.title not in self.detail else ""
        return f"{prefix}{title}{self.detail}"


class InvalidRequestError(ProvisionerError):
    @property
    def field_errors(self) -> dict[str, list[str]]:
        errors = self.problem.get("errors")
        return dict(errors) if isinstance(errors, dict) else {}


class AuthenticationError(ProvisionerError):
    pass


class ForbiddenError(ProvisionerError):
    pass


class _NamesAnIdentity(ProvisionerError):
    """A refusal that names the identity already issued (409 already provisioned, 410)."""

    @property
    def thing_name(self) -> str | None:
        return self.problem.get("thingName")

    @property
    def certificate_id(self) -> str | None:
        return self.problem.get("certificateId")


class AlreadyProvisionedError(_NamesAnIdentity):
    @property
    def in_progress(self) -> bool:
        return self.problem.get("inProgress") is True


class IdempotencyConflict(ProvisionerError):
    pass


class KeyNotReplayableError(_NamesAnIdentity):
    pass


class RateLimitedError(ProvisionerError):
    pass


class ServiceUnavailableError(ProvisionerError):
    pass


class TransportError(ProvisionerError):
    pass


def from_problem(status: int, problem: Mapping[str, Any], retry_after: float | None) -> ProvisionerError:
    """The error for a non-201 answer; `problem` is its problem+json body ({} if it had none)."""
    type_ = _text(problem.get("type"))
    slug = (type_ or "").rsplit("/", 1)[-1]
    cls: type[ProvisionerError]
    if status == 401:
        cls = AuthenticationError
    elif status == 403:
        cls = ForbiddenError
    elif status == 409:
        cls = IdempotencyConflict if slug == "idempotency-in-progress" else AlreadyProvisionedError
    elif status == 410:
        cls = KeyNotReplayableError
    elif status == 429:
        cls = RateLimitedError
    elif status >= 500:
        cls = ServiceUnavailableError
    else:
        cls = InvalidRequestError
    return cls(
        _text(problem.get("detail")) or f"the service answered HTTP {status}",
        status=status,
        type=type_,
        title=_text(problem.get("title")),
        step=_text(problem.get("step")),
        aws_error_code=_text(problem.get("errorCode")),
        rule=_text(problem.get("rule")),
        request_id=_text(problem.get("requestId")),
        retry_after=retry_after,
        problem=problem,
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None
