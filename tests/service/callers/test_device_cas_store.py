"""Device CAs in the store, on SQLite and on a real PostgreSQL: the migration, registration, changes
that move the revision, block lists, CRLs, and the group's rate and quota held across hosts
(threads with their own engines, as processes would)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import inspect
from stores import in_threads

from emulator.security.idevids import Manufacturer
from service.callers.devices import DeviceCaSpec, Trust, groups
from service.errors import DeviceRevoked
from service.store import Store
from service.store.device_cas import DeviceCaQueries
from service.store.engine import current_revision, head_revision

NOW = dt.datetime(2026, 12, 6, 12, 0, 5, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def maker() -> Manufacturer:
    return Manufacturer.create("Store Test Maker")


def registered(queries: DeviceCaQueries, maker: Manufacturer, **options: Any) -> str:
    spec = DeviceCaSpec(
        template=options.pop("template", "demo"),
        certificates=maker.ca_pem().decode(),
        parameters={"SerialNumber": {"from": "subject.serialNumber"}},
        **options,
    )
    return groups.register(queries, spec, NOW).ca_id


def test_the_migration_creates_the_device_ca_tables(stores: Callable[[], Store]) -> None:
    store = stores()
    assert current_revision(store.engine) == head_revision()
    tables = set(inspect(store.engine).get_table_names())
    assert {"device_cas", "device_ca_rate_windows", "device_ca_blocks", "device_ca_crls"} <= tables


def test_a_registered_ca_reads_back_and_every_change_moves_its_revision(
    stores: Callable[[], Store], maker: Manufacturer
) -> None:
    queries = DeviceCaQueries(stores().engine)
    ca_id = registered(queries, maker, name="line 3", rate_per_minute=60, max_provisions=100)
    record = queries.get(ca_id)
    assert record is not None
    assert (record.template, record.name, record.reprovision, record.enabled) == (
        "demo",
        "line 3",
        "once",
        True,
    )
    assert (record.rate_per_minute, record.max_provisions, record.provisions, record.revision) == (
        60,
        100,
        0,
        1,
    )
    assert record.parameters == {"SerialNumber": {"from": "subject.serialNumber"}}
    assert record.subject == "CN=Store Test Maker Root CA,O=Store Test Maker"
    assert record.created_at == NOW and record.created_at.tzinfo is not None
    assert "BEGIN" not in repr(record)

    later = NOW + dt.timedelta(minutes=1)
    assert groups.change(queries, ca_id, {"reprovision": "allow", "rate_per_minute": None}, later)
    assert groups.block(queries, ca_id, "serial", "SN-9", later, reason="lost")
    assert not groups.block(queries, ca_id, "serial", "SN-9", later)  # already there
    groups.put_crl(queries, ca_id, maker.intermediate.crl([]), later)
    assert queries.drop_crl(ca_id, later)
    assert queries.unblock(ca_id, "serial", "SN-9", later)
    record = queries.get(ca_id)
    assert record is not None
    assert (record.reprovision, record.rate_per_minute, record.updated_at) == ("allow", None, later)
    assert queries.revisions() == {ca_id: record.revision} and record.revision >= 6
    assert not groups.change(queries, "cmissing", {"enabled": False}, later)
    with pytest.raises(LookupError):
        groups.block(queries, "cmissing", "serial", "SN-1", later)
    with pytest.raises(LookupError):
        groups.put_crl(queries, "cmissing", maker.intermediate.crl([]), later)


def test_block_lists_and_crls_are_kept_and_go_with_their_ca(
    stores: Callable[[], Store], maker: Manufacturer
) -> None:
    queries = DeviceCaQueries(stores().engine)
    ca_id = registered(queries, maker)
    other = registered(queries, maker, template="other")
    _, device = maker.issue("SN-1")
    groups.block(queries, ca_id, "serial", "SN-1", NOW, reason="stolen")
    groups.block(queries, ca_id, "fingerprint", "AB" * 32, NOW)
    crl = groups.put_crl(queries, ca_id, maker.intermediate.crl([device]), NOW)
    assert [(b.kind, b.value, b.reason) for b in queries.blocks(ca_id)] == [
        ("fingerprint", "ab" * 32, ""),
        ("serial", "SN-1", "stolen"),
    ]
    stored = queries.crl(ca_id)
    assert stored is not None and stored.crl == crl.crl and stored.revoked == 1
    assert stored.next_update is not None and stored.next_update > stored.this_update
    material = queries.material(ca_id)
    assert material is not None and len(material[1]) == 2 and material[2] is not None

    assert queries.delete(ca_id)
    assert queries.get(ca_id) is None and queries.blocks(ca_id) == [] and queries.crl(ca_id) is None
    assert [r.ca_id for r in queries.list()] == [other]
    assert queries.list(template="demo") == []


def test_a_crl_loaded_on_one_host_revokes_on_another(
    stores: Callable[[], Store], maker: Manufacturer
) -> None:
    operator, worker = DeviceCaQueries(stores().engine), DeviceCaQueries(stores().engine)
    ca_id = registered(operator, maker)
    _, device = maker.issue("SN-7")
    trust = Trust(worker)
    assert trust.verify([device]).ca_id == ca_id
    groups.put_crl(operator, ca_id, maker.intermediate.crl([device]), NOW)
    trust.refresh(force=True)
    with pytest.raises(DeviceRevoked):
        trust.verify([device])


def test_a_groups_quota_holds_across_hosts(stores: Callable[[], Store], maker: Manufacturer) -> None:
    ca_id = registered(DeviceCaQueries(stores().engine), maker, max_provisions=5)
    hosts = [DeviceCaQueries(stores().engine) for _ in range(4)]
    taken = in_threads(4, lambda i: sum(hosts[i].take_provision(ca_id) for _ in range(4)))
    assert sum(taken) == 5
    hosts[0].give_back_provision(ca_id)
    assert hosts[1].take_provision(ca_id) and not hosts[2].take_provision(ca_id)
    record = hosts[3].get(ca_id)
    assert record is not None and record.provisions == 5


def test_a_groups_rate_is_counted_across_hosts_per_minute(
    stores: Callable[[], Store], maker: Manufacturer
) -> None:
    ca_id = registered(DeviceCaQueries(stores().engine), maker, rate_per_minute=10)
    hosts = [DeviceCaQueries(stores().engine) for _ in range(4)]
    counts = in_threads(4, lambda i: [hosts[i].count_request(ca_id, 1000) for _ in range(5)])
    assert sorted(c for host in counts for c in host) == list(range(1, 21))
    assert hosts[0].count_request(ca_id, 1001) == 1  # a new window starts again (and forgets the old)
    assert hosts[1].count_request(ca_id, 1000) == 1
