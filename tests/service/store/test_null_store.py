"""The null store of a service that keeps none (PROVISIONER_DATABASE_URL=off): what the gate, the
keys, idempotency, the settlement and the audit ask of it, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import create_engine
from stores import provisioned_record

from service.audit import Audit
from service.callers import keys
from service.callers.gate import Gate
from service.callers.idempotency import Idempotency
from service.callers.model import Caller
from service.callers.settlement import Settlement, Settler
from service.errors import InvalidInput, NotFound, Unauthorized
from service.store import RegistrationFilter, Store
from service.store.null import NullStore

NOW = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)
BOOTSTRAP = Caller(key_id="bootstrap-1", role="admin", bootstrap=True)


def test_the_null_store_has_every_query_group_of_a_store() -> None:
    # A group added to Store must be added to the null store too, or a store-less service fails
    # with an AttributeError where it should answer.
    engine = create_engine("sqlite://")
    try:
        groups = {name for name in vars(Store(engine)) if not name.startswith("_") and name != "engine"}
    finally:
        engine.dispose()
    assert groups <= set(vars(NullStore()))
    assert NullStore().off and not Store.off


def test_without_a_store_the_gate_admits_a_bootstrap_key_reserving_nothing() -> None:
    store = NullStore()
    with store.transaction() as tx:
        gate = Gate(tx, claim_seconds=30)
        gate.check_rate(BOOTSTRAP, NOW)
        admission = gate.admit(BOOTSTRAP, template="demo", parameters={"SerialNumber": "N-1"}, now=NOW)
    assert admission.enrollment is None and not admission.quota_taken
    assert admission.succeeded("demo-N-1", "c" * 64, NOW) == [] and admission.failed() == []


def test_without_a_store_an_issued_key_is_unknown_and_bootstrap_keys_work() -> None:
    store = NullStore()
    issued = "iotp_k0123456789ab_" + "A" * 43
    with pytest.raises(Unauthorized):
        keys.authenticate(f"Bearer {issued}", ("bootstrap-key-0123456789",), store, NOW)
    caller = keys.authenticate("Bearer bootstrap-key-0123456789", ("bootstrap-key-0123456789",), store, NOW)
    assert caller.key_id == "bootstrap-1" and caller.is_admin


def test_without_a_store_an_idempotency_key_is_refused_naming_the_store() -> None:
    idempotency = Idempotency(NullStore(), ttl=timedelta(hours=1), lock=timedelta(seconds=30))
    with pytest.raises(InvalidInput) as refused:
        idempotency.begin(BOOTSTRAP, "k-1", "0" * 64, NOW, device="template 'demo'")
    assert refused.value.status == 400 and "PROVISIONER_DATABASE_URL=off" in refused.value.detail


def test_without_a_store_a_settlement_is_dropped_at_once_and_nothing_is_pruned() -> None:
    store = NullStore()
    settler = Settler(lambda: store, None)
    assert settler.settle(Settlement(provisioned_record(NOW))) is True
    assert settler.replay() == 0
    assert Audit(store, retention=timedelta(days=1)).prune(NOW) == 0


def test_without_a_store_what_needs_records_is_not_found() -> None:
    store = NullStore()
    with pytest.raises(NotFound, match="PROVISIONER_DATABASE_URL=off"):
        store.keys.list()
    with pytest.raises(NotFound, match="PROVISIONER_DATABASE_URL=off"):
        store.registrations.page(RegistrationFilter(), None, 10)
