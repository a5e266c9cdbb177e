"""Certificates AWS IoT made for a provision that never reached its caller: what the flow reports.

A fleet-provisioning flow that got a certificate from Create* and then failed (its RegisterThing
was refused, lost or never sent; an answer could not be proven to be this request's) leaves that
certificate in AWS: PENDING_ACTIVATION, or ACTIVE and attached to a thing when RegisterThing went
through and only its answer was lost. The flow reports each one to an `UnsentCertificates`
(service.lifecycle.orphans records it for the sweep); so does the provision use case when the
flow succeeded but the answer could not be handed out (`reason="caller-gone"`).

A certificate id only: never a private key or an ownership token.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from service.errors import (
    AnswerUnproven,
    ProvisioningRejected,
    ServiceError,
)

REASONS = (
    "answer-unproven",  # an answer could not be proven to be this request's
    "register-refused",  # AWS answered RegisterThing with a rejection (or still throttled it)
    "register-lost",  # RegisterThing was sent and no usable answer came: it may have registered
    "register-not-sent",  # the flow failed after Create* and before RegisterThing was sent
    "caller-gone",  # provisioned, but the answer could not be handed out (the use case says so)
    "error",  # a bug after Create*
)


@dataclass(frozen=True)
class UnsentCertificate:
    certificate_id: str
    reason: str
    request_id: str | None = None
    template: str | None = None
    thing_name: str | None = None  # known only when RegisterThing answered


class UnsentCertificates(Protocol):
    def record(self, unsent: UnsentCertificate) -> None:
        """Keep it for the sweep; never raises (a failure to record is logged and counted)."""

    def close(self) -> None: ...


def reason_for(error: BaseException) -> str:
    """Why a flow that had its certificate failed, from what it raised."""
    if isinstance(error, AnswerUnproven):
        return "answer-unproven"
    if not isinstance(error, ServiceError):
        return "error"
    if error.step == "register":
        return "register-refused" if isinstance(error, ProvisioningRejected) else "register-lost"
    return "register-not-sent"
