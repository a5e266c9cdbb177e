"""provisioner_client.Client against the real service over HTTP: results, errors, retries."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest
from device_keys import make_csr
from factory_service import Service
from served import free_port

from emulator import Emulator, Fault
from provisioner_client import (
    AlreadyProvisionedError,
    AuthenticationError,
    Client,
    ForbiddenError,
    IdempotencyConflict,
    KeyNotReplayableError,
    ProvisionResult,
    RateLimitedError,
    TransportError,
)


def test_provision_with_csr_returns_the_identity_and_a_resend_replays_it(
    service: Service, factory_key: str, emulator: Emulator
) -> None:
    _, csr = make_csr()
    with Client(service.url, factory_key) as client:
        first = client.provision("demo", {"SerialNumber": "C-1"}, csr, idempotency_key="key-c-1")
        again = client.provision("demo", {"SerialNumber": "C-1"}, csr, idempotency_key="key-c-1")
    assert first.thing_name == "demo-C-1" and first.private_key is None and not first.replayed
    assert first.device_configuration == {"serial": "C-1", "location": "factory"}
    assert again.replayed and again.certificate_id == first.certificate_id
    thing = emulator.registry.describe_thing("demo-C-1")
    assert thing is not None and thing["principals"] == [first.certificate_id]


def test_every_provision_sends_an_idempotency_key(service: Service, factory_key: str) -> None:
    _, csr = make_csr()
    with Client(service.url, factory_key) as client:
        client.provision("demo", {"SerialNumber": "C-2"}, csr)
    (record,) = service.registrations(thingName="demo-C-2")
    assert len(record["idempotencyKey"]) == 36  # a uuid4


def test_repr_of_a_server_key_result_hides_the_key_and_its_replay_is_410(service: Service) -> None:
    with Client(service.url, service.create_key()) as client:
        result = client.provision("demo", {"SerialNumber": "C-3"}, idempotency_key="key-c-3")
        with pytest.raises(KeyNotReplayableError) as replay:
            client.provision("demo", {"SerialNumber": "C-3"}, idempotency_key="key-c-3")
    assert isinstance(result, ProvisionResult) and result.private_key
    assert "PRIVATE KEY" not in repr(result) and "private_key" not in repr(result)
    assert replay.value.status == 410 and replay.value.thing_name == "demo-C-3"


def test_a_wrong_key_is_an_authentication_error(service: Service) -> None:
    with Client(service.url, "iotp_nosuchkey_0123456789abcdef") as client:
        with pytest.raises(AuthenticationError) as raised:
            client.provision("demo", {"SerialNumber": "C-4"}, make_csr()[1])
    assert raised.value.status == 401 and raised.value.request_id
    assert "0123456789abcdef" not in str(raised.value) and "0123456789abcdef" not in repr(client)


@pytest.mark.parametrize(
    ("scope", "rule"),
    [
        ({"templates": ["other"]}, "template-not-allowed"),
        ({"enrolledOnly": True}, "not-enrolled"),
        ({"parameterRules": {"SerialNumber": "^SN-[0-9]+$"}}, "parameter-rule"),
    ],
)
def test_a_refusal_is_a_forbidden_error_naming_its_rule(service: Service, scope: dict, rule: str) -> None:
    with Client(service.url, service.create_key(**scope)) as client:
        with pytest.raises(ForbiddenError) as raised:
            client.provision("demo", {"SerialNumber": "C-5"}, make_csr()[1])
    assert raised.value.status == 403 and raised.value.rule == rule
    assert raised.value.type and raised.value.type.endswith("/forbidden")


def test_a_once_enrollment_provisioned_before_is_already_provisioned(
    service: Service, factory_key: str
) -> None:
    service.enroll("C-6", reprovision="once")
    with Client(service.url, factory_key) as client:
        client.provision("demo", {"SerialNumber": "C-6"}, make_csr()[1])
        with pytest.raises(AlreadyProvisionedError) as raised:
            client.provision("demo", {"SerialNumber": "C-6"}, make_csr()[1])
    assert raised.value.status == 409 and raised.value.thing_name == "demo-C-6"
    assert not raised.value.in_progress


def test_over_the_rate_is_rate_limited_with_retry_after_and_no_retry_past_the_deadline(
    service: Service,
) -> None:
    key = service.create_key(ratePerMinute=1)
    with Client(service.url, key, max_retries=3, deadline=0.5) as client:
        client.provision("demo", {"SerialNumber": "C-7"}, make_csr()[1])
        started = time.monotonic()
        with pytest.raises(RateLimitedError) as raised:
            client.provision("demo", {"SerialNumber": "C-8"}, make_csr()[1])
    # Retry-After (up to a minute) is beyond the deadline: raised at once, not after waiting.
    assert time.monotonic() - started < 5
    assert (
        raised.value.status == 429 and raised.value.retry_after is not None and raised.value.retry_after >= 1
    )
    assert raised.value.slug == "rate-limited"


def test_a_request_still_running_is_409_and_the_retry_gets_its_answer(
    service: Service, factory_key: str, emulator: Emulator
) -> None:
    emulator.set_fault("register_thing", Fault(latency=(2.0, 2.0), count=1))
    _, csr = make_csr()
    first: list[ProvisionResult] = []
    with Client(service.url, factory_key) as client:
        runner = threading.Thread(
            target=lambda: first.append(
                client.provision("demo", {"SerialNumber": "C-9"}, csr, idempotency_key="k9")
            )
        )
        runner.start()
        time.sleep(0.8)  # the first request now waits on RegisterThing
        with Client(service.url, factory_key, max_retries=0) as impatient:
            with pytest.raises(IdempotencyConflict) as raised:
                impatient.provision("demo", {"SerialNumber": "C-9"}, csr, idempotency_key="k9")
        second = client.provision("demo", {"SerialNumber": "C-9"}, csr, idempotency_key="k9")
        runner.join(30)
    assert raised.value.status == 409 and raised.value.retry_after is not None
    assert second.replayed and second.certificate_id == first[0].certificate_id
    assert len(emulator.registry.describe_thing("demo-C-9")["principals"]) == 1  # type: ignore[index]


def test_a_service_that_is_not_there_is_a_transport_error_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, "any-key-0123456789", max_retries=2) as client:
        with pytest.raises(TransportError) as raised:
            client.provision("demo", {"SerialNumber": "C-10"}, make_csr()[1])
    assert time.monotonic() - started < 10
    assert url in str(raised.value) and raised.value.status is None


def test_the_client_imports_neither_the_service_nor_the_emulator() -> None:
    code = (
        "import sys, provisioner_client, provisioner_client.cli\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('service', 'emulator'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
