"""The provisioning service's client: POST /provision with safe, bounded retries.

Every provision carries an Idempotency-Key (the caller's, or a fresh uuid4), so resending it after
a lost connection, a 429, a 503 or a 409 "still running" can never make a second identity: the
service replays the first 201 instead. Retries honour Retry-After, are at most `max_retries`, and
all of them end by `deadline` seconds after the call began.
"""

from __future__ import annotations

import email.utils
import random
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from provisioner_client.errors import (
    AlreadyProvisionedError,
    IdempotencyConflict,
    ProvisionerError,
    RateLimitedError,
    ServiceUnavailableError,
    TransportError,
    from_problem,
)
from provisioner_client.results import ProvisionResult

USER_AGENT = "iot-factory/0.1"
BACKOFF_BASE = 0.5  # seconds; doubled each attempt when the service gave no Retry-After
BACKOFF_MAX = 10.0


@dataclass(frozen=True)
class Identity:
    """Who an API key is (GET /caller): never its secret."""

    key_id: str
    role: str
    scope: Mapping[str, Any] = field(default_factory=dict)


class Client:
    """Thread-safe: one Client may serve many threads, which then also share its pacing (a 429 or
    503 with Retry-After holds back every thread's next request, not only the one that got it)."""

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        max_retries: int = 3,
        deadline: float = 120.0,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"the service URL must start with http:// or https:// (got {url!r})")
        if not api_key:
            raise ValueError("an API key is required")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.max_retries = max_retries
        self.deadline = deadline
        self._http = httpx.Client(
            base_url=self.url,
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT},
        )
        self._paused_until = 0.0
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def stop_retrying(self) -> None:
        """Requests under way finish; waits for a retry end now and raise their last error."""
        self._stopping.set()

    def provision(
        self,
        template: str,
        parameters: Mapping[str, str] | None = None,
        csr: str | None = None,
        *,
        idempotency_key: str | None = None,
    ) -> ProvisionResult:
        """Provision one device; with `csr` (PEM) its private key never leaves the caller."""
        body: dict[str, Any] = {"templateName": template, "parameters": dict(parameters or {})}
        if csr is not None:
            body["csr"] = csr
        headers = {"Idempotency-Key": idempotency_key or str(uuid.uuid4())}
        give_up = time.monotonic() + self.deadline
        attempt = 0
        while True:
            try:
                self._wait(self._paused_until - time.monotonic(), give_up)
                response = self._send("POST", "/provision", give_up, json=body, headers=headers)
                if response.status_code != 201:
                    raise _error(response)
                return _result(response)
            except ProvisionerError as error:
                delay = _retry_delay(error, attempt)
                if delay is None or attempt >= self.max_retries or time.monotonic() + delay > give_up:
                    raise
                if self._stopping.is_set():
                    raise
                if isinstance(error, RateLimitedError | ServiceUnavailableError):
                    self._pause_everyone(delay)
                else:
                    self._wait(delay, give_up)
                attempt += 1
                if self._stopping.is_set():
                    raise

    def whoami(self) -> Identity:
        """The key's id, role and scope (GET /caller); AuthenticationError for a wrong key."""
        response = self._send("GET", "/caller", time.monotonic() + self.timeout)
        if response.status_code != 200:
            raise _error(response)
        body = response.json()
        return Identity(key_id=body["keyId"], role=body["role"], scope=body.get("scope") or {})

    def _send(self, method: str, path: str, give_up: float, **kwargs: Any) -> httpx.Response:
        # The one place where httpx's errors become ours.
        timeout = max(0.1, min(self.timeout, give_up - time.monotonic()))
        try:
            return self._http.request(method, path, timeout=timeout, **kwargs)
        except httpx.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise TransportError(f"cannot reach the provisioning service at {self.url}: {reason}") from exc

    def _pause_everyone(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    def _wait(self, seconds: float, give_up: float) -> None:
        seconds = min(seconds, give_up - time.monotonic())
        if seconds > 0:
            self._stopping.wait(seconds)


def _retry_delay(error: ProvisionerError, attempt: int) -> float | None:
    """Seconds to wait before resending, or None when resending cannot help."""
    backoff = min(BACKOFF_MAX, BACKOFF_BASE * 2.0**attempt) * random.uniform(0.8, 1.2)
    if isinstance(error, TransportError):
        return backoff
    retryable = (
        isinstance(error, RateLimitedError | IdempotencyConflict)
        or (isinstance(error, AlreadyProvisionedError) and error.in_progress)
        or error.status == 503
        or error.retry_after is not None  # e.g. 502 "answer unproven": the service says retry
    )
    if not retryable:
        return None
    return error.retry_after if error.retry_after is not None else backoff


def _error(response: httpx.Response) -> ProvisionerError:
    problem: dict[str, Any] = {}
    if "json" in response.headers.get("Content-Type", ""):
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict):
            problem = body
    if not problem:  # not the service's problem+json (a proxy's page, say): say only the status
        problem = {"detail": f"the service answered HTTP {response.status_code} {response.reason_phrase}"}
    return from_problem(response.status_code, problem, _retry_after(response.headers.get("Retry-After")))


def _result(response: httpx.Response) -> ProvisionResult:
    try:
        return ProvisionResult.from_answer(
            response.json(), replayed=response.headers.get("Idempotent-Replayed") == "true"
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise ProvisionerError("the service's 201 answer is not a provisioning result", status=201) from exc


def _retry_after(value: str | None) -> float | None:
    """Retry-After as seconds: delay-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
