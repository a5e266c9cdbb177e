"""Errors told the way a person at the factory line can act on them."""

from __future__ import annotations

from provisioner_client import errors
from provisioner_client.errors import ProvisionerError

_RULES = {
    "not-enrolled": "This device is not enrolled: ask the operator to add its enrollment.",
    "enrollment-disabled": "This device's enrollment is disabled: ask the operator.",
    "template-not-allowed": "This API key may not use this template.",
    "parameter-rule": "A parameter breaks this API key's rule.",
    "quota-exhausted": "This API key has used all its provisions: ask the operator for a new key.",
    "server-keys-not-allowed": "This API key needs a CSR.",
    "admin-only": "This needs an admin key.",
}


def explain(error: ProvisionerError) -> str:
    """One or two sentences; the service's own detail is kept, the API key never appears."""
    detail = error.detail
    if isinstance(error, errors.TransportError):
        return f"{detail}. Is the service running, and is IOT_FACTORY_URL (--url) right?"
    if isinstance(error, errors.AuthenticationError):
        return (
            "The service refused the API key (401): check IOT_FACTORY_API_KEY; "
            "it may be mistyped, revoked or expired."
        )
    if isinstance(error, errors.ForbiddenError):
        return f"{_RULES.get(error.rule or '', 'Refused (403).')} ({detail})"
    if isinstance(error, errors.AlreadyProvisionedError):
        if error.in_progress:
            return f"Another request is provisioning this device right now: try again shortly. ({detail})"
        return f"Already provisioned as thing {error.thing_name}. ({detail})"
    if isinstance(error, errors.IdempotencyConflict):
        return f"The first attempt for this device is still running: try again shortly. ({detail})"
    if isinstance(error, errors.KeyNotReplayableError):
        return f"Issued before, but its key cannot be shown again. ({detail})"
    if isinstance(error, errors.RateLimitedError):
        wait = f" Try again in {error.retry_after:.0f} s." if error.retry_after is not None else ""
        who = "AWS IoT is throttling" if error.slug == "throttled" else "Rate limited"
        return f"{who}: {detail}.{wait}"
    if isinstance(error, errors.ServiceUnavailableError):
        return f"The service cannot provision right now ({error.status}): {detail}. Try again later."
    if isinstance(error, errors.InvalidRequestError) and error.aws_error_code:
        return f"Refused ({error.status}): {detail}"
    if isinstance(error, errors.InvalidRequestError):
        fields = "; ".join(
            f"{name}: {', '.join(map(str, problems))}" for name, problems in error.field_errors.items()
        )
        return f"The service rejected the request ({error.status}): {detail}" + (
            f" [{fields}]" if fields else ""
        )
    return str(error)
