"""The gate in front of every provision: the caller's scope, rate and quota, and enrollments.

`Gate.admit` checks the rules in the order a person would ask them (may this key use this
template, this flow, these parameters; is it within its rate; is the device enrolled and not
provisioned yet; is the key's quota left) and reserves what must not be used twice (the
enrollment entry, one unit of quota). The `Admission` it returns settles the reservation: kept
when the device was provisioned, given back otherwise. Limits hold across workers and hosts
because every reservation is one atomic statement in the shared store.
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.callers.model import Caller
from service.errors import AlreadyProvisioned, Forbidden, RateLimited
from service.store import EnrollmentRecord, Store


@dataclass
class Admission:
    """What one provision holds until it is settled (in the store given, often a transaction)."""

    caller: Caller
    enrollment: EnrollmentRecord | None = None
    claim: str | None = None
    quota_taken: bool = False

    def succeeded(self, store: Store | None, thing_name: str, certificate_id: str, at: datetime) -> None:
        if store is not None and self.enrollment is not None and self.claim is not None:
            store.enrollments.complete(self.enrollment.id, self.claim, thing_name, certificate_id, at)

    def uncertain(self, store: Store | None, at: datetime) -> None:
        """The provision may have happened (its answer was lost): keep the quota unit, and count
        it on the enrollment without a thing name, so a 'once' entry refuses a second identity."""
        if store is not None and self.enrollment is not None and self.claim is not None:
            store.enrollments.complete(self.enrollment.id, self.claim, None, None, at)

    def failed(self, store: Store | None) -> None:
        if store is None:
            return
        if self.enrollment is not None and self.claim is not None:
            store.enrollments.release(self.enrollment.id, self.claim)
        if self.quota_taken:
            store.keys.give_back_provision(self.caller.key_id)


class Gate:
    def __init__(self, store: Store | None, *, claim_seconds: float) -> None:
        self._store = store
        # How long an enrollment stays held by a provision that never settles (a crash).
        self._claim = timedelta(seconds=claim_seconds)

    def check_rate(self, caller: Caller, now: datetime) -> None:
        """429 + Retry-After once the key made `rate_per_minute` requests in this minute."""
        if caller.rate_per_minute is None or self._store is None:
            return
        epoch = now.timestamp()
        window = int(epoch // 60)
        count = self._store.keys.count_request(caller.key_id, window, now)
        if count > caller.rate_per_minute:
            retry_after = max(1, math.ceil((window + 1) * 60 - epoch))
            raise RateLimited(
                f"API key {caller.key_id} is limited to {caller.rate_per_minute} requests a minute; "
                f"retry in {retry_after} s",
                retry_after=retry_after,
            )

    def admit(
        self, caller: Caller, *, template: str, parameters: Mapping[str, str], server_key: bool, now: datetime
    ) -> Admission:
        _check_scope(caller, template, parameters, server_key)
        admission = Admission(caller)
        if self._store is None:
            return admission
        entry = self._store.enrollments.match(template, parameters)
        if entry is None:
            if caller.scope.enrolled_only:
                raise Forbidden(
                    f"API key {caller.key_id} may only provision enrolled devices, and no enrollment "
                    f"of template '{template}' matches these parameters",
                    rule="not-enrolled",
                )
        else:
            admission.enrollment = entry
            admission.claim = secrets.token_hex(8)
            if not self._store.enrollments.claim(entry.id, admission.claim, now + self._claim, now):
                _refuse_enrollment(self._store, entry)
        if caller.max_provisions is not None:
            if not self._store.keys.take_provision(caller.key_id):
                admission.failed(self._store)
                raise Forbidden(
                    f"API key {caller.key_id} has used all {caller.max_provisions} of its provisions",
                    rule="quota-exhausted",
                )
            admission.quota_taken = True
        return admission


def _check_scope(caller: Caller, template: str, parameters: Mapping[str, str], server_key: bool) -> None:
    scope = caller.scope
    if scope.templates is not None and template not in scope.templates:
        allowed = ", ".join(scope.templates) or "none"
        raise Forbidden(
            f"API key {caller.key_id} may not use template '{template}' (allowed: {allowed})",
            rule="template-not-allowed",
        )
    if server_key and not scope.server_keys:
        raise Forbidden(
            f"API key {caller.key_id} may only provision with a CSR: send 'csr' so the private key "
            "stays on the device",
            rule="server-keys-not-allowed",
        )
    for name, pattern in scope.parameter_rules.items():
        value = parameters.get(name)
        if value is None:
            raise Forbidden(
                f"API key {caller.key_id} requires parameter '{name}' (matching {pattern})",
                rule="parameter-rule",
                extra={"parameter": name},
            )
        if re.fullmatch(pattern, value) is None:
            raise Forbidden(
                f"parameter '{name}' does not match this API key's rule {pattern}",
                rule="parameter-rule",
                extra={"parameter": name},
            )


def _refuse_enrollment(store: Store, entry: EnrollmentRecord) -> None:
    # The claim failed: read the entry again to say why (it may have changed meanwhile).
    current = store.enrollments.get(entry.template, entry.parameter, entry.value) or entry
    device = f"{current.parameter}={current.value}"
    if not current.enabled:
        raise Forbidden(
            f"the enrollment of {device} for template '{current.template}' is disabled",
            rule="enrollment-disabled",
        )
    if current.reprovision == "once" and current.provisions > 0 and current.last_thing_name is None:
        raise AlreadyProvisioned(
            f"{device} may already be provisioned: an earlier request's answer from AWS IoT was lost "
            "after RegisterThing was sent, so its thing may exist. Its enrollment allows one "
            "provision; an operator can check AWS IoT and allow another (reprovision=allow)",
            extra={"thingName": None, "certificateId": current.last_certificate_id},
        )
    if current.reprovision == "once" and current.provisions > 0:
        raise AlreadyProvisioned(
            f"{device} was already provisioned as thing '{current.last_thing_name}' and its "
            "enrollment allows one provision",
            extra={"thingName": current.last_thing_name, "certificateId": current.last_certificate_id},
        )
    raise AlreadyProvisioned(
        f"{device} is being provisioned by another request right now; retry when it has finished",
        extra={"inProgress": True},
        retry_after=5,
    )
