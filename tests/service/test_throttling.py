"""Living within AWS's rate limits: throttled calls are retried within the deadline, then 429.

Against the emulator's faults: `reject=` for exact sequences, `throttle=RATE/BURST` (a token
bucket) for load above the limit.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from http_checks import TWO_SECOND_DEADLINE, provision_serial
from scraped import delta, rejections, scrape

from emulator import Emulator, Fault

THROTTLED = (429, "ThrottlingException", "Rate exceeded")


def minted(emulator: Emulator) -> list[dict[str, Any]]:
    """Certificates made by fleet provisioning (the claim certificate is not one)."""
    return [c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]


def test_a_throttled_register_thing_is_retried_with_the_same_token(
    emulator: Emulator, start_service: Any
) -> None:
    api = start_service()
    before = scrape(api.get)
    emulator.faults.set("register_thing", Fault(reject=THROTTLED, count=2))
    response = provision_serial(api, "SN-T1")
    assert response.status_code == 201, response.text
    after = scrape(api.get)
    assert delta(before, after, "provisioner_aws_throttle_retries_total", step="register") == 2
    assert rejections(before, after, step="register", error_code="ThrottlingException") == 2
    assert delta(before, after, "provisioner_aws_throttled_requests_total") == 0
    # One certificate, now ACTIVE and attached to the thing: the retries reused its token.
    certificates = minted(emulator)
    assert len(certificates) == 1
    assert emulator.registry.describe_thing("demo-SN-T1") is not None
    assert response.json()["certificateId"] == certificates[0]["certificateId"]


def test_a_throttled_create_mints_nothing_and_is_sent_again(
    emulator: Emulator, start_service: Any, csr_pem: str
) -> None:
    api = start_service()
    before = scrape(api.get)
    # The control plane's way: 400 ThrottlingException (reference: throttling).
    emulator.faults.set(
        "create_certificate_from_csr", Fault(reject=(400, "ThrottlingException", "slow down"), count=1)
    )
    response = provision_serial(api, "SN-T2", csr_pem)
    assert response.status_code == 201, response.text
    after = scrape(api.get)
    assert delta(before, after, "provisioner_aws_throttle_retries_total", step="create") == 1
    assert len(minted(emulator)) == 1


def test_throttling_past_the_deadline_is_a_429_with_retry_after(
    emulator: Emulator, start_service: Any
) -> None:
    api = start_service(**TWO_SECOND_DEADLINE)
    before = scrape(api.get)
    emulator.faults.set("register_thing", Fault(reject=THROTTLED))
    response = provision_serial(api, "SN-T3")
    assert response.status_code == 429, response.text
    assert int(response.headers["Retry-After"]) >= 1
    problem = response.json()
    assert problem["type"].endswith("/throttled") and problem["step"] == "register"
    assert problem["errorCode"] == "ThrottlingException"
    after = scrape(api.get)
    retries = delta(before, after, "provisioner_aws_throttle_retries_total", step="register")
    assert retries >= 2  # 0.05-0.1, 0.1-0.2, 0.2-0.4 s... within 1.5 s
    assert delta(before, after, "provisioner_aws_throttled_requests_total", step="register") == 1
    assert delta(before, after, "provisioner_provisions_total", outcome="refused") == 1


def test_load_above_the_limit_ends_in_201_or_429_never_5xx(emulator: Emulator, start_service: Any) -> None:
    api = start_service(
        PROVISIONER_POOL_SIZE="4",
        PROVISIONER_REQUEST_TIMEOUT_SECONDS="3",
        PROVISIONER_STEP_TIMEOUT_SECONDS="2",
    )
    before = scrape(api.get)
    # 10 calls a second (5 provisions: each is a Create* and a RegisterThing), burst 4.
    emulator.faults.set("*", Fault(throttle=(10, 4)))
    with ThreadPoolExecutor(12) as pool:
        responses = list(pool.map(lambda n: provision_serial(api, f"SN-L{n}"), range(36)))
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {201, 429}, statuses
    assert statuses.count(201) >= 5
    for response in responses:
        if response.status_code == 429:
            assert int(response.headers["Retry-After"]) >= 1
    after = scrape(api.get)
    retries = delta(before, after, "provisioner_aws_throttle_retries_total")
    assert retries > 0
    assert delta(before, after, "provisioner_aws_throttled_requests_total") == statuses.count(429)
    assert len(emulator.registry.list_things()) == statuses.count(201)
