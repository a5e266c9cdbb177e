"""GET /metrics counts what really happened: provisions, AWS rejections, gate refusals, steps.

One process (the test server): the default registry, whose values accumulate over the session,
so every check compares a read before with a read after.
"""

from __future__ import annotations

import json
import re
from typing import Any

from http_checks import provision_serial
from repository import REPO_ROOT
from scraped import delta, rejections, scrape

from emulator import Emulator, Fault


def test_metrics_count_provisions_rejections_and_http_requests(
    emulator: Emulator, start_service: Any, csr_pem: str
) -> None:
    api = start_service()
    before = scrape(api.get)
    assert provision_serial(api, "SN-M1", csr_pem).status_code == 201
    assert provision_serial(api, "SN-M2").status_code == 201
    assert provision_serial(api, "SN-M3", template="no-such-template").status_code == 404
    assert api.post("/provision", json={"templateName": "demo", "bogus": 1}).status_code == 422
    after = scrape(api.get)

    name = "provisioner_provisions_total"
    assert delta(before, after, name, template="demo", flow="csr", outcome="provisioned") == 1
    assert delta(before, after, name, template="demo", flow="server-key", outcome="provisioned") == 1
    assert delta(before, after, name, template="no-such-template", outcome="refused") == 1
    assert delta(before, after, name, template="none", flow="none", outcome="refused") == 1
    assert rejections(before, after, step="register", error_code="ResourceNotFoundException") == 1
    http = "http_server_request_duration_seconds_count"
    assert delta(before, after, http, http_route="/provision", http_response_status_code="201") == 2
    assert delta(before, after, http, http_route="/provision", http_request_method="POST") == 4
    steps = "provisioner_mqtt_step_duration_seconds_count"
    assert delta(before, after, steps, step="create", result="accepted") == 3
    assert delta(before, after, steps, step="register", result="accepted") == 2
    assert delta(before, after, steps, step="register", result="rejected") == 1
    # No label anywhere holds a serial or a path.
    assert "SN-M" not in api.get("/metrics").text


def test_the_stores_transactions_around_a_provision_are_timed(emulator: Emulator, start_service: Any) -> None:
    api = start_service()
    before = scrape(api.get)
    assert provision_serial(api, "SN-T1").status_code == 201
    assert (
        api.post("/provision", json={"templateName": "demo"}, headers={"Authorization": ""}).status_code
        == 401
    )
    after = scrape(api.get)
    name = "provisioner_store_transaction_duration_seconds"
    # One provision: its checks and its settlement; the request without a key reached neither.
    assert delta(before, after, f"{name}_count", transaction="checks") == 1
    assert delta(before, after, f"{name}_count", transaction="settlement") == 1
    assert 0 < delta(before, after, f"{name}_sum", transaction="checks") < 10


def test_http_metric_labels_routes_not_paths(api: Any) -> None:
    before = scrape(api.get)
    assert api.get("/admin/keys/k0123456789ab").status_code in (200, 404)
    assert api.get("/no/such/path/SN-secret").status_code == 404
    after = scrape(api.get)
    http = "http_server_request_duration_seconds_count"
    assert delta(before, after, http, http_route="/admin/keys/<key_id>", http_request_method="GET") == 1
    assert delta(before, after, http, http_route="unmatched", http_response_status_code="404") == 1
    assert "SN-secret" not in api.get("/metrics").text


def test_gate_refusals_and_rate_limits_are_counted(api: Any) -> None:
    scoped = api.post("/admin/keys", json={"templates": ["other"]}).json()["apiKey"]
    slow = api.post("/admin/keys", json={"ratePerMinute": 1}).json()["apiKey"]
    before = scrape(api.get)
    assert provision_serial(api, "SN-G1", key=scoped).status_code == 403  # template-not-allowed
    assert provision_serial(api, "SN-G2", key=slow).status_code == 503  # passes the gate; no broker here
    assert provision_serial(api, "SN-G3", key=slow).status_code == 429  # its second request this minute
    after = scrape(api.get)
    assert delta(before, after, "provisioner_gate_refusals_total", rule="template-not-allowed") == 1
    assert delta(before, after, "provisioner_rate_limit_refusals_total", limit="api-key") == 1
    assert delta(before, after, "provisioner_provisions_total", outcome="failed") == 1


def test_idempotent_replays_are_counted(emulator: Emulator, start_service: Any) -> None:
    api = start_service()
    before = scrape(api.get)
    headers = {"Idempotency-Key": "metrics-replay-1"}
    body = {"templateName": "demo", "parameters": {"SerialNumber": "SN-R1"}}
    first = api.post("/provision", json=body, headers=headers)
    assert first.status_code == 201
    replay = api.post("/provision", json=body, headers=headers)
    assert replay.status_code == 410  # a server-key provision cannot show its key again
    assert api.post("/provision", json={**body, "csr": None}, headers={}).status_code == 422
    after = scrape(api.get)
    assert delta(before, after, "provisioner_idempotent_replays_total") == 0  # 410 is no replay


def test_metrics_require_an_admin_key_unless_opened(serve: Any, unreachable_settings: Any) -> None:
    api = serve(unreachable_settings())  # the default: /metrics needs an admin key
    assert api.get("/metrics", key=None).status_code == 401
    provisioner = api.post("/admin/keys", json={"role": "provision"}).json()["apiKey"]
    refused = api.get("/metrics", key=provisioner)
    assert refused.status_code == 403 and refused.json()["rule"] == "admin-only"
    assert api.get("/metrics").status_code == 200
    opened = serve(unreachable_settings(PROVISIONER_METRICS_REQUIRE_ADMIN="false"))
    assert opened.get("/metrics", key=None).status_code == 200


def test_duplicates_and_replaced_connections_are_counted(emulator: Emulator, start_service: Any) -> None:
    api = start_service(PROVISIONER_POOL_SIZE="1")
    before = scrape(api.get)
    emulator.faults.set("register_thing", Fault(answer_twice=True))
    assert provision_serial(api, "SN-D1").status_code == 201
    emulator.faults.clear()
    # The repeat dirtied the idle connection: the next request gets a fresh one.
    assert provision_serial(api, "SN-D2").status_code == 201
    after = scrape(api.get)
    assert delta(before, after, "provisioner_duplicates_detected_total") == 1
    assert delta(before, after, "provisioner_connection_replacements_total", reason="unexpected-message") == 1


def test_the_dashboard_uses_only_declared_metrics_and_shows_them_all() -> None:
    from prometheus_client.metrics import MetricWrapperBase

    from service import metrics

    declared = {m._name for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}
    dashboard = (REPO_ROOT / "deploy" / "grafana" / "provisioner.json").read_text()
    used = {
        re.sub(r"_(bucket|count|sum|total)$", "", name)
        for name in re.findall(r"\b(?:provisioner|http_server)_[a-z_]+", dashboard)
    }
    assert used == {re.sub(r"_total$", "", name) for name in declared}
    json.loads(dashboard)
