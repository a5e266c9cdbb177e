"""The gate in front of every provision: the caller's scope, rate and quota, and enrollments.

The rules go in the order a person would ask them (may this key use this template, this flow,
these parameters: `Gate.scope_refusal`, before the store's transaction; is it within its rate;
is the device enrolled and not provisioned yet; is the key's quota left: `Gate.admit`), which
reserves what must not be used twice (the enrollment entry, one unit of quota). The `Admission`
it returns says how to settle the reservation: kept when the device was provisioned, given back
otherwise. Limits hold across workers and hosts because every reservation is one atomic
statement in the shared store.

A device caller (a certificate from a registered device CA) is its enrollment group's: the
group's template, the group's rate and quota (service.store.device_cas), and the group's
reprovision policy, held on an enrollment entry of the device's own (template, parameter
`device-ca:<CA id>`, the certificate's SHA-256 fingerprint), added at its first request and
claimed as any entry is: so a claim whose outcome was not recorded never lapses back to free on
a `once` group, and decommissioning the device's thing reopens it.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from service.callers import rules, settlement
from service.callers.model import DEVICE_ENTRY_PREFIX, AnyCaller, Caller, DeviceCaller
from service.callers.settlement import Op
from service.errors import AlreadyProvisioned, Forbidden, RateLimited
from service.store import EnrollmentRecord, Store


@dataclass
class Admission:
    """What one provision holds until its settlement (service.callers.settlement) is written."""

    caller: AnyCaller
    enrollment: EnrollmentRecord | None = None
    claim: str | None = None
    quota_taken: bool = False

    def succeeded(self, thing_name: str, certificate_id: str, at: datetime) -> list[Op]:
        if self.enrollment is None or self.claim is None:
            return []
        return [
            settlement.complete_enrollment(self.enrollment.id, self.claim, thing_name, certificate_id, at)
        ]

    def uncertain(self, at: datetime) -> list[Op]:
        """The provision may have happened (its answer was lost): keep the quota unit, and count
        it on the enrollment without a thing name, so a 'once' entry refuses a second identity."""
        if self.enrollment is None or self.claim is None:
            return []
        return [settlement.complete_enrollment(self.enrollment.id, self.claim, None, None, at)]

    def failed(self) -> list[Op]:
        """Nothing was provisioned: give the claim and the quota unit back."""
        ops = []
        if self.enrollment is not None and self.claim is not None:
            ops.append(settlement.release_enrollment(self.enrollment.id, self.claim))
        if self.quota_taken:
            if isinstance(self.caller, DeviceCaller):
                ops.append(settlement.give_back_device_quota(self.caller.ca_id))
            else:
                ops.append(settlement.give_back_quota(self.caller.key_id))
        return ops


class Gate:
    def __init__(self, store: Store, *, claim_seconds: float) -> None:
        self._store = store
        # How long an enrollment stays held by a provision that never settles (a crash).
        self._claim = timedelta(seconds=claim_seconds)

    def check_rate(self, caller: AnyCaller, now: datetime) -> None:
        """429 + Retry-After once the key (or the device's group) made `rate_per_minute`
        requests in this minute."""
        if isinstance(caller, DeviceCaller):
            rate, who = caller.identity.group.rate_per_minute, f"Device CA {caller.ca_id}"
        else:
            rate, who = caller.rate_per_minute, f"API key {caller.key_id}"
        if rate is None:
            return
        epoch = now.timestamp()
        window = int(epoch // 60)
        if isinstance(caller, DeviceCaller):
            count = self._store.device_cas.count_request(caller.ca_id, window)
        else:
            count = self._store.keys.count_request(caller.key_id, window, now)
        if count > rate:
            retry_after = max(1, math.ceil((window + 1) * 60 - epoch))
            raise RateLimited(
                f"{who} is limited to {rate} requests a minute; retry in {retry_after} s",
                retry_after=retry_after,
            )

    @staticmethod
    def scope_refusal(
        caller: AnyCaller, *, template: str, parameters: Mapping[str, str], server_key: bool
    ) -> Forbidden | None:
        """What the key's scope says of this request, without the store: checked before the
        store's transaction opens (rules take time), and raised inside it after the rate counted
        the request (a refusal counts, or a key could probe its scope without limit). A device
        caller's scope is its group's template."""
        try:
            if isinstance(caller, DeviceCaller):
                _check_device(caller, template)
            else:
                _check_scope(caller, template, parameters, server_key)
        except Forbidden as refused:
            return refused
        return None

    def admit(
        self, caller: AnyCaller, *, template: str, parameters: Mapping[str, str], now: datetime
    ) -> Admission:
        """Reserve the device's enrollment and a unit of the key's quota (the scope was checked)."""
        if isinstance(caller, DeviceCaller):
            return self._admit_device(caller, template, now)
        admission = Admission(caller)
        # A device caller's own entries are not a key's to claim.
        parameters = {k: v for k, v in parameters.items() if not k.startswith(DEVICE_ENTRY_PREFIX)}
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
                _refuse_enrollment(self._store, entry, now)
        if caller.max_provisions is not None:
            if not self._store.keys.take_provision(caller.key_id):
                if admission.enrollment is not None and admission.claim is not None:
                    self._store.enrollments.release(admission.enrollment.id, admission.claim)
                raise Forbidden(
                    f"API key {caller.key_id} has used all {caller.max_provisions} of its provisions",
                    rule="quota-exhausted",
                )
            admission.quota_taken = True
        return admission

    def _admit_device(self, caller: DeviceCaller, template: str, now: datetime) -> Admission:
        """The device's own entry (its group's policy) claimed, and a unit of the group's quota
        (counted even without a limit: the group shows how many it provisioned)."""
        group = caller.identity.group
        parameter, value = caller.entry
        entry = self._store.enrollments.ensure(template, parameter, value, group.reprovision, now)
        admission = Admission(caller, enrollment=entry, claim=secrets.token_hex(8))
        assert admission.claim is not None
        if not self._store.enrollments.claim(entry.id, admission.claim, now + self._claim, now):
            _refuse_enrollment(self._store, entry, now, device=_device_name(caller))
        if not self._store.device_cas.take_provision(caller.ca_id):
            self._store.enrollments.release(entry.id, admission.claim)
            raise Forbidden(
                f"device CA {caller.ca_id} has used all {group.max_provisions} of its provisions",
                rule="quota-exhausted",
            )
        admission.quota_taken = True
        return admission


def _device_name(caller: DeviceCaller) -> str:
    identity = caller.identity
    return (
        f"the device {identity.certificate.subject} (certificate SHA-256 "
        f"{identity.fingerprint_sha256[:16]}...) of device CA {identity.ca_id}"
    )


def _check_device(caller: DeviceCaller, template: str) -> None:
    if template != caller.identity.template:
        raise Forbidden(
            f"device CA {caller.ca_id} provisions template '{caller.identity.template}', not '{template}'",
            rule="template-not-allowed",
        )


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
        unusable = scope.invalid_rules.get(name)
        if unusable is not None:
            # Stored before rules ran on RE2: refuse rather than skip the rule.
            raise Forbidden(
                f"API key {caller.key_id} has a rule for parameter '{name}' that cannot be used "
                f"({unusable}); an admin must replace the key",
                rule="parameter-rule",
                extra={"parameter": name},
            )
        value = parameters.get(name)
        if value is None:
            raise Forbidden(
                f"API key {caller.key_id} requires parameter '{name}' (matching {pattern})",
                rule="parameter-rule",
                extra={"parameter": name},
            )
        if not rules.matches(pattern, value):
            raise Forbidden(
                f"parameter '{name}' does not match this API key's rule {pattern}",
                rule="parameter-rule",
                extra={"parameter": name},
            )


def _refuse_enrollment(
    store: Store, entry: EnrollmentRecord, now: datetime, *, device: str | None = None
) -> None:
    # The claim failed: read the entry again to say why (it may have changed meanwhile).
    current = store.enrollments.get(entry.template, entry.parameter, entry.value) or entry
    device = device or f"{current.parameter}={current.value}"
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
    if current.claim is not None and current.claim_expires_at is not None and current.claim_expires_at < now:
        # Held past its holder's deadline: the outcome was never recorded (the store failed after
        # AWS answered and the settlement waits in a journal, or the worker died).
        raise AlreadyProvisioned(
            f"{device} may already be provisioned: the outcome of an earlier request for it (of "
            f"template '{current.template}') has not been recorded, because the store was "
            "unavailable when AWS IoT answered or the service stopped. Its enrollment allows one "
            "provision, so this answer stands until that outcome is written (the service writes "
            "outcomes it journaled once the store is back: retry later) or an operator checks AWS "
            "IoT and allows another (reprovision=allow)",
            extra={"thingName": None, "certificateId": None},
        )
    raise AlreadyProvisioned(
        f"{device} is being provisioned by another request right now; retry when it has finished",
        extra={"inProgress": True},
        retry_after=5,
    )
