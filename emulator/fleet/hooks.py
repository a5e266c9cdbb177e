"""The pre-provisioning hook: AWS invokes a Lambda before RegisterThing; we POST to a URL.

AWS behaviour copied (https://docs.aws.amazon.com/iot/latest/developerguide/pre-provisioning-hook.html):
the hook receives ``claimCertificateId``,
``certificateId``, ``certificatePem``, ``templateArn``, ``clientId`` and ``parameters``, and answers
``{"allowProvisioning": bool, "parameterOverrides": {...}}`` within 5 s. A deny, or any failure to
get a well-formed answer in time, rejects RegisterThing with ACCESS_DENIED. The call blocks
(stdlib ``urllib``); the MQTT handler runs it in a thread, never on the event loop.
"""

from __future__ import annotations

import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from emulator.errors import AccessDenied

DEFAULT_TIMEOUT = 5.0  # AWS's limit for the pre-provisioning Lambda
MAX_RESPONSE_BYTES = 64 * 1024  # a Lambda's answer is a few hundred bytes; refuse floods


@dataclass(frozen=True)
class HookDecision:
    """An allowing answer (a deny raises AccessDenied instead of returning)."""

    allow: bool
    parameter_overrides: dict[str, str] = field(default_factory=dict)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A Lambda invocation never redirects, and following one would turn the POST into a GET:
    # a 3xx is reported as a failure like any other non-2xx status.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


def _failed(reason: str) -> AccessDenied:
    return AccessDenied(f"pre-provisioning hook failed: {reason}")


def call_pre_provisioning_hook(
    url: str, event: dict[str, Any], timeout: float = DEFAULT_TIMEOUT
) -> HookDecision:
    """POST ``event`` as JSON to ``url``; return the decision or raise AccessDenied."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _failed(f"unsupported URL scheme {parts.scheme!r} (only http and https)")
    timed_out = _failed(f"timed out after {float(timeout)} s")
    request = urllib.request.Request(
        url,
        data=json.dumps(event).encode("utf-8"),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    # No proxies from the environment: AWS invokes the Lambda directly, and a stray http_proxy
    # must not reroute a hook on 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)
    started = time.monotonic()
    try:
        with opener.open(request, timeout=timeout) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise _failed(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise timed_out from None
        raise _failed(f"cannot connect: {exc.reason}") from None
    except TimeoutError:
        raise timed_out from None
    except (OSError, http.client.HTTPException) as exc:
        raise _failed(f"broken response: {exc!r}") from None
    # urllib's timeout bounds each socket operation; AWS's 5 s bounds the whole answer.
    if time.monotonic() - started > timeout:
        raise timed_out
    if len(body) > MAX_RESPONSE_BYTES:
        raise _failed(f"response larger than {MAX_RESPONSE_BYTES} bytes")
    try:
        answer = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise _failed(f"response is not valid JSON: {exc}") from None
    if not isinstance(answer, dict):
        raise _failed("response is not a JSON object")
    allow = answer.get("allowProvisioning")
    if not isinstance(allow, bool):
        raise _failed(f"allowProvisioning must be true or false, got {allow!r:.40}")
    if not allow:
        raise AccessDenied("pre-provisioning hook denied provisioning")
    overrides = answer.get("parameterOverrides")
    if overrides is None:
        return HookDecision(allow=True)
    if not isinstance(overrides, dict) or not all(isinstance(v, str) for v in overrides.values()):
        raise _failed("parameterOverrides must be an object of string values")
    return HookDecision(allow=True, parameter_overrides=dict(overrides))
