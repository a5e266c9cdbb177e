"""Template answer topics: subscribed on first use, kept, and evicted LRU within AWS's 50."""

from __future__ import annotations

import json
from pathlib import Path

from repository import DEMO_TEMPLATE
from scraped import scrape

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
    # The SUBACK came before the create answer (the broker answers in order), so the flow found
    # it there: one wait, far shorter than the round trip.
    after_count, after_seconds = waits()
    assert after_count == count + 1
    assert after_seconds - seconds < 0.2
    provision("S2")  # the link holds the subscription now: no wait at all
    assert waits()[0] == after_count
