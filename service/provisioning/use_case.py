"""The provision use case, the same for every front door: a ProvisionRequest in, an Outcome out
(both in service.provisioning.request). It knows no door:

    admit     the server-key policy, the Idempotency-Key's form, the key's scope; then in ONE store
              transaction the key's rate, the Idempotency-Key's record (or its replay), the
              scope's verdict, the enrollment's claim and the quota (service.callers.gate)
    provision the fleet-provisioning flow (service.provisioning.flow)
    settle    what the attempt reserved, kept or given back, with its audit record, in one more
              transaction, or journaled when the store is unavailable (service.callers.settlement)
    audit     its metrics and its log line (service.provisioning.record)

A transaction costs more than its statements (docs/gate.md), so a provision makes two. A request
its door could not read (no valid credential, a body that breaks a rule) goes to
`Provisioning.unreadable`, which records it like any other attempt. Every attempt, whatever its
end, is counted and logged; every one with a caller leaves one audit record (a 401 is only
counted: nobody is accountable for it).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

from service import metrics
from service.audit import Audit
from service.callers import settlement
from service.callers.gate import Admission, Gate
from service.callers.idempotency import Idempotency, Replay
from service.callers.model import AnyCaller, DeviceCaller
from service.callers.presented import require_new_key
from service.callers.settlement import Settlement, Settler
from service.config import Settings
from service.errors import InvalidInput, ServiceError, StoreConflict, StoreUnavailable, Unauthorized
from service.provisioning import record
from service.provisioning.flow import Provisioner
from service.provisioning.request import Arrival, Outcome, ProvisionRequest
from service.store import Store

# How often the checks' transaction runs when PostgreSQL undoes it to break a deadlock.
ADMIT_TRIES = 3

# What a service that makes no private keys (PROVISIONER_ALLOW_SERVER_KEYS=false) says without a CSR.
CSR_REQUIRED = "required: this service does not create private keys, send a certificate signing request"


class Provisioning:
    """The provision use case of one app; its store, settler and flow are this worker's (made
    after the fork: each is asked for when a request needs it)."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Callable[[], Store],
        settler: Callable[[], Settler],
        provisioner: Callable[[], Provisioner],
    ) -> None:
        self._settings = settings
        self._store = store
        self._settler = settler
        self._provisioner = provisioner
        # How long a running request holds its device and Idempotency-Key: past its deadline and
        # a margin, an unsettled hold answers "may already be provisioned" (docs/gate.md).
        self._claim_seconds = settings.request_timeout_seconds + 30
        self._claim = timedelta(seconds=self._claim_seconds)
        self._idempotency_ttl = timedelta(hours=settings.idempotency_ttl_hours)
        self._retention = timedelta(days=settings.audit_retention_days)

    def provision(self, request: ProvisionRequest) -> Outcome:
        """Provision the device `request` names, or raise a ServiceError. The attempt's settlement
        and audit record are written (or journaled) before this returns or raises."""
        attempt = record.Attempt.of(request)
        status, error = 500, None
        try:
            outcome = self._provision(request, attempt)
            status = 201
            return outcome
        except ServiceError as raised:
            status, error = raised.status, raised
            raise
        finally:
            self._end(attempt, status, error)

    def unreadable(self, arrival: Arrival, caller: AnyCaller | None, error: BaseException) -> None:
        """Record a request its door could not read (its caller is None when the credential was
        what failed: a refused device certificate is recorded with what it was, issuer, serial
        and fingerprint); the door then raises `error` to render it."""
        attempt = record.Attempt(arrival, caller)
        if isinstance(error, ServiceError):
            self._end(attempt, error.status, error)
        else:
            self._end(attempt, 500, None)

    # -- inside --------------------------------------------------------------------------------
    def _provision(self, request: ProvisionRequest, attempt: record.Attempt) -> Outcome:
        caller, asked = request.caller, request.idempotency
        if request.csr is None and not self._settings.allow_server_generated_keys:
            raise InvalidInput.broken_rules({"csr": [CSR_REQUIRED]})
        if asked is not None:
            attempt.idempotency_key = Idempotency.check_key(asked.key)
        if isinstance(caller, DeviceCaller) and request.csr is not None:
            # The operational key is made new on the device, never its factory identity's.
            require_new_key(caller, request.csr)
        store = self._store()
        # Before the transaction: nothing slow runs while it holds the store (SQLite's write lock).
        device = f"template '{request.template}', {_parameters_text(request.parameters)}"
        scope_refusal = Gate.scope_refusal(
            caller, template=request.template, parameters=request.parameters, server_key=request.csr is None
        )
        started = time.perf_counter()
        try:
            for tries_left in reversed(range(ADMIT_TRIES)):
                try:
                    replay, admission, refusal = self._admit(store, request, attempt, scope_refusal, device)
                    break
                except StoreConflict:
                    # PostgreSQL undid the transaction (a deadlock with another request's): nothing
                    # of it was kept, so it runs again; the caller sees a 503 only if it keeps losing.
                    if not tries_left:
                        raise
        finally:
            metrics.store_transaction_duration.labels("checks").observe(time.perf_counter() - started)
        if replay is not None:
            outcome = Outcome.replayed_from(replay.body)
            attempt.replayed = True
        elif refusal is not None:
            raise refusal
        else:
            assert admission is not None  # no replay and no refusal: _admit admitted
            outcome = self._run_flow(request, attempt, admission)
        attempt.thing_name, attempt.certificate_id = outcome.thing_name, outcome.certificate_id
        return outcome

    def _admit(
        self,
        store: Store,
        request: ProvisionRequest,
        attempt: record.Attempt,
        scope_refusal: ServiceError | None,
        device: str,
    ) -> tuple[Replay | None, Admission | None, ServiceError | None]:
        """The one transaction of the checks: the replay of an earlier attempt, or the admission,
        or the refusal (which commits too: a refusal counts against the key's rate)."""
        caller, asked = request.caller, request.idempotency
        refusal: ServiceError | None = None
        replay = None
        admission = None
        with store.transaction() as tx:
            gate = Gate(tx, claim_seconds=self._claim_seconds)
            gate.check_rate(caller, attempt.arrival.at)
            idempotency = Idempotency(tx, ttl=self._idempotency_ttl, lock=self._claim)
            if asked is not None:
                replay = idempotency.begin(
                    caller, asked.key, asked.request_sha256, attempt.arrival.at, device=device
                )
            if replay is None:
                try:
                    if scope_refusal is not None:
                        raise scope_refusal
                    admission = gate.admit(
                        caller,
                        template=request.template,
                        parameters=request.parameters,
                        now=attempt.arrival.at,
                    )
                except StoreUnavailable:
                    raise  # not a refusal: the transaction failed (and is undone)
                except ServiceError as refused:
                    # A refusal still counts against the key's rate (the transaction commits), or a
                    # key could probe scopes and enrollments without limit; the attempt's record goes.
                    if asked is not None:
                        idempotency.failed(caller, asked.key)
                    refusal = refused
        return replay, admission, refusal

    def _run_flow(self, request: ProvisionRequest, attempt: record.Attempt, admission: Admission) -> Outcome:
        caller, asked = request.caller, request.idempotency
        try:
            outcome = self._provisioner().provision(
                template_name=request.template,
                parameters=dict(request.parameters),
                csr=request.csr,
                request_id=request.arrival.request_id,
            )
        except BaseException as error:
            if _outcome_unknown(error):
                # AWS may have registered the thing and the answer was lost: the device's
                # enrollment counts it (a 'once' entry refuses a second identity) and the quota
                # unit stays used.
                attempt.ops += admission.uncertain(datetime.now(UTC))
            else:
                attempt.ops += admission.failed()
            if asked is not None:
                attempt.ops.append(settlement.forget_idempotency(caller.principal, asked.key))
            raise
        attempt.ops += admission.succeeded(outcome.thing_name, outcome.certificate_id, datetime.now(UTC))
        if asked is not None:
            kept = outcome.to_json()
            attempt.ops.append(settlement.finish_idempotency(caller.principal, asked.key, 201, kept))
        return outcome

    def _end(self, attempt: record.Attempt, status: int, error: ServiceError | None) -> None:
        registration = record.finish(attempt, status, error)
        if isinstance(error, Unauthorized):
            # Before authentication nobody is accountable and nothing was reserved: a count in
            # the metrics (record.finish), not a row each, or anyone could fill the store (and
            # slow every provision) without a key.
            return
        # Before the answer leaves: written to the store, or journaled (docs/gate.md).
        started = time.perf_counter()
        try:
            self._settler().settle(Settlement(registration, attempt.ops))
        finally:
            metrics.store_transaction_duration.labels("settlement").observe(time.perf_counter() - started)
        self._maybe_prune(attempt.arrival.at)

    def _maybe_prune(self, now: datetime) -> None:
        try:
            store = self._store()
        except ServiceError:
            return  # the store is unavailable: pruning waits for another request
        Audit(store, retention=self._retention).maybe_prune(now)


def _parameters_text(parameters: Mapping[str, str]) -> str:
    shown = ", ".join(f"{name}={value[:64]}" for name, value in list(parameters.items())[:4])
    return shown or "no parameters"


def _outcome_unknown(error: BaseException) -> bool:
    """A failure after RegisterThing was sent with no answer to tell: a timeout, a lost
    connection, an answer that could not be proven ours. AWS's own rejections and throttling
    are answers: nothing was registered."""
    return isinstance(error, ServiceError) and error.step == "register" and error.status >= 500
