"""Template answer topics: subscribed on first use, kept, and evicted LRU within AWS's 50."""

from __future__ import annotations

import json
import time
from pathlib import Path

from repository import DEMO_TEMPLATE
from scraped import scrape

from emulator import Fault

DEMO = json.loads(DEMO_TEMPLATE.read_text())


def test_template_subscriptions_stay_within_fifty_and_evict_the_least_used(
    make_emulator, start_service, templates_dir: Path
) -> None:
    names = [f"tpl-{i:02d}" for i in range(26)]
    for name in names:
        (templates_dir / f"{name}.json").write_text(json.dumps(DEMO))
    emulator = make_emulator(templates_dir=templates_dir)
    api = start_service(emulator=emulator, PROVISIONER_POOL_SIZE="1")
    for index, name in enumerate(names + names[:2]):  # 28 uses of 26 templates on one link
        response = api.post(
            "/provision", json={"templateName": name, "parameters": {"SerialNumber": f"S{index}"}}
        )
        assert response.status_code == 201, response.text
    connection = api.get("/readyz").json()["connections"][0]
    # Every answer topic in JSON and CBOR (flows alternate the two, docs/correlation.md): 8
    # certificate answer filters + 4 per template, so 10 templates within AWS's 50 per connection
    # (the emulator refuses a 51st subscription, which would have failed a request above).
    assert connection["answerSubscriptions"] == 10
    assert connection["subscriptions"] == 48
    client_id = connection["clientId"]
    assert client_id in emulator.connected_client_ids()  # the same link served every request


def test_a_links_first_flow_of_a_template_subscribes_beside_its_create_request(
    make_emulator, start_service
) -> None:
    # Every packet the emulator sends waits 0.4 s: a SUBSCRIBE sent after the create answer, as
    # it was, would keep the flow waiting a whole round trip for its SUBACK.
    emulator = make_emulator(send_delay=0.4)
    api = start_service(emulator=emulator, PROVISIONER_POOL_SIZE="1")
    subscribe = {"step": "subscribe", "result": "ok"}

    def waits() -> tuple[float, float]:  # the registry is the test process's: read differences
        metrics = scrape(api.get)
        return (
            metrics.value("provisioner_mqtt_step_duration_seconds_count", **subscribe),
            metrics.value("provisioner_mqtt_step_duration_seconds_sum", **subscribe),
        )

    def provision(serial: str) -> None:
        body = {"templateName": "demo", "parameters": {"SerialNumber": serial}}
        response = api.post("/provision", json=body)
        assert response.status_code == 201, response.text

    count, seconds = waits()
    provision("S1")
    # The SUBACK came before the create answer (the broker answers in order): the flow found the
    # subscription held, or waited far less than the round trip.
    after_count, after_seconds = waits()
    assert after_count <= count + 1
    assert after_seconds - seconds < 0.2
    assert _answer_groups(api) == 1
    provision("S2")  # the link holds the subscription: no wait at all
    assert waits()[0] == after_count


def _answer_groups(api) -> int:
    return api.get("/readyz").json()["connections"][0]["answerSubscriptions"]


def test_a_rejected_create_leaves_its_subscription_to_the_links_next_flow(
    make_emulator, start_service
) -> None:
    emulator = make_emulator(send_delay=0.05)
    emulator.set_fault("create_keys_and_certificate", Fault(reject=(500, "InternalFailure", "boom"), count=1))
    api = start_service(emulator=emulator, PROVISIONER_POOL_SIZE="1")
    body = {"templateName": "demo", "parameters": {"SerialNumber": "R1"}}
    response = api.post("/provision", json=body)
    assert (response.status_code, response.json()["step"]) == (502, "create")
    # The SUBSCRIBE sent beside the rejected request was answered after its flow ended; the next
    # flow on the same link finds it held.
    response = api.post("/provision", json=body)
    assert response.status_code == 201, response.text
    assert emulator.registry.describe_thing("demo-R1") is not None
    assert _answer_groups(api) == 1


def test_after_a_reconnect_the_next_flow_subscribes_to_its_template_again(
    make_emulator, start_service
) -> None:
    emulator = make_emulator()
    api = start_service(emulator=emulator, PROVISIONER_POOL_SIZE="1")
    first = {"templateName": "demo", "parameters": {"SerialNumber": "C1"}}
    assert api.post("/provision", json=first).status_code == 201
    assert _answer_groups(api) == 1
    emulator.disconnect_all()
    deadline = time.monotonic() + 20
    while True:  # the link reconnects by itself, with backoff
        connection = api.get("/readyz").json()["connections"][0]
        if connection["state"] == "ready" and connection["clientId"] in emulator.connected_client_ids():
            break
        assert time.monotonic() < deadline, connection
        time.sleep(0.1)
    assert _answer_groups(api) == 0  # a clean session keeps no subscription
    second = {"templateName": "demo", "parameters": {"SerialNumber": "C2"}}
    response = api.post("/provision", json=second)
    assert response.status_code == 201, response.text
    assert emulator.registry.describe_thing("demo-C2") is not None
    assert _answer_groups(api) == 1
