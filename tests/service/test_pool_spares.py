"""A fault costs only its own request: a flow waiting out an answer that never comes does not take
the capacity healthy requests need (spare connections, docs/correlation.md).

Against the emulator's faults, over the real stack (HTTP -> Flask -> paho pool -> emulator).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from http_checks import provision_serial
from scraped import delta, scrape

from emulator import Emulator, Fault


def wait_for(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


SETTINGS = {
    "PROVISIONER_POOL_SIZE": "1",
    "PROVISIONER_POOL_WAIT_SECONDS": "2",
    "PROVISIONER_STEP_TIMEOUT_SECONDS": "4",
    "PROVISIONER_REQUEST_TIMEOUT_SECONDS": "5",
    "PROVISIONER_POOL_SPARE_AFTER_SECONDS": "0.2",
}


def test_a_healthy_request_is_served_while_the_only_connection_waits_out_a_lost_answer(
    emulator: Emulator, start_service: Any
) -> None:
    api = start_service(PROVISIONER_POOL_SPARES="1", **SETTINGS)
    before = scrape(api.get)
    emulator.set_fault("register_thing", Fault(never_answer=True, count=1))
    with ThreadPoolExecutor(2) as pool:
        lost = pool.submit(provision_serial, api, "LOST")
        wait_for(lambda: emulator.faults.met.get(("register_thing", "never_answer")) == 1)
        started = time.monotonic()
        healthy = provision_serial(api, "HEALTHY")
        took = time.monotonic() - started
        assert healthy.status_code == 201, healthy.text
        assert healthy.json()["thingName"] == "demo-HEALTHY"
        # Served by a spare within about the threshold plus a connect, not after the lost
        # answer's step timeout (4 s) nor refused after the pool wait (2 s).
        assert took < 1.5, took
        assert lost.result().status_code == 504
    after = scrape(api.get)
    assert delta(before, after, "provisioner_mqtt_connections_opened_total", reason="spare") == 1
    # Once nothing holds capacity, the pool goes back to its size.
    provision_serial(api, "AFTER")
    wait_for(lambda: api.get("/readyz").json()["spares"] == 0)
    assert api.get("/readyz").json()["readyConnections"] == 1


def test_without_spares_the_same_request_waits_out_the_pool_and_gets_503(
    emulator: Emulator, start_service: Any
) -> None:
    api = start_service(PROVISIONER_POOL_SPARES="0", **SETTINGS)
    emulator.set_fault("register_thing", Fault(never_answer=True, count=1))
    with ThreadPoolExecutor(2) as pool:
        lost = pool.submit(provision_serial, api, "LOST")
        wait_for(lambda: emulator.faults.met.get(("register_thing", "never_answer")) == 1)
        refused = provision_serial(api, "HEALTHY")
        assert refused.status_code == 503, refused.text
        assert refused.headers["Retry-After"] == "1"
        assert lost.result().status_code == 504


def test_no_spares_are_opened_while_the_broker_cannot_be_reached(
    make_emulator: Any, start_service: Any
) -> None:
    emulator = make_emulator()
    api = start_service(emulator=emulator, PROVISIONER_POOL_SPARES="4", **SETTINGS)
    before = scrape(api.get)
    emulator.stop()
    wait_for(lambda: api.get("/readyz").status_code == 503)
    assert provision_serial(api, "DOWN").status_code == 503
    after = scrape(api.get)
    assert delta(before, after, "provisioner_mqtt_connections_opened_total", reason="spare") == 0
