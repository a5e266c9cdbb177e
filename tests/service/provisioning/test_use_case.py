"""The provision use case with no door in front: a ProvisionRequest built in Python, as a second
door would build one, against the real emulator and a real SQLite store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from device_keys import make_csr

from service.callers.model import Caller
from service.callers.settlement import Settler
from service.config import Settings
from service.errors import InvalidInput, Unauthorized
from service.provisioning.flow import Provisioner
from service.provisioning.request import Arrival, IdempotencyKey, ProvisionRequest
from service.provisioning.use_case import Provisioning
from service.store import RegistrationFilter, Store

CALLER = Caller(key_id="bootstrap-1", role="admin", bootstrap=True)
ADDRESS = "192.0.2.7"


class Door:
    """What a door holds: the use case, and the store its records can be read from."""

    def __init__(self, provisioning: Provisioning, store: Store) -> None:
        self.provisioning = provisioning
        self.store = store

    def records(self) -> list[Any]:
        return self.store.registrations.page(RegistrationFilter(), None, 100)


@pytest.fixture
def door(emulator: Any, settings_for: Callable[..., Settings], tmp_path: Path) -> Iterator[Door]:
    settings = settings_for(emulator, PROVISIONER_DATABASE_URL=f"sqlite:///{tmp_path / 'store.db'}")
    assert settings.store_url is not None
    store = Store.open(settings.store_url)
    provisioner = Provisioner(settings)
    settler = Settler(lambda: store, None)
    provisioning = Provisioning(
        settings, store=lambda: store, settler=lambda: settler, provisioner=lambda: provisioner
    )
    yield Door(provisioning, store)
    provisioner.close()
    store.close()


def test_a_request_built_without_a_door_is_provisioned_and_replayed_by_its_idempotency_key(
    door: Door, emulator: Any
) -> None:
    csr = make_csr()[1]

    def request(request_id: str) -> ProvisionRequest:
        return ProvisionRequest(
            arrival=Arrival(request_id, ADDRESS),
            caller=CALLER,
            template="demo",
            parameters={"SerialNumber": "U-1"},
            csr=csr,
            idempotency=IdempotencyKey("u-1", "0" * 64),
        )

    first = door.provisioning.provision(request("r-1"))
    assert first.thing_name == "demo-U-1" and first.private_key is None and not first.replayed
    certificate = x509.load_pem_x509_certificate(first.certificate_pem.encode())
    assert certificate.public_key() == x509.load_pem_x509_csr(csr.encode()).public_key()

    again = door.provisioning.provision(request("r-2"))
    assert again.replayed
    assert (again.thing_name, again.certificate_id, again.certificate_pem) == (
        first.thing_name,
        first.certificate_id,
        first.certificate_pem,
    )
    assert [t["thingName"] for t in emulator.registry.list_things()] == ["demo-U-1"]
    records = door.records()
    assert [(r.request_id, r.outcome, r.http_status) for r in records] == [
        ("r-2", "replayed", 201),
        ("r-1", "provisioned", 201),
    ]
    assert {(r.key_id, r.caller_address, r.thing_name) for r in records} == {
        ("bootstrap-1", ADDRESS, "demo-U-1")
    }


def test_a_request_its_door_could_not_read_is_recorded_when_its_caller_is_known(door: Door) -> None:
    door.provisioning.unreadable(Arrival("r-3", ADDRESS), CALLER, InvalidInput("body is not valid JSON"))
    door.provisioning.unreadable(Arrival("r-4", ADDRESS), None, Unauthorized("The API key is not valid."))
    records = door.records()
    assert [(r.request_id, r.key_id, r.outcome, r.http_status, r.problem) for r in records] == [
        ("r-3", "bootstrap-1", "refused", 400, "invalid-input")
    ]
