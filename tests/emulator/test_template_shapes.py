"""Templates in the shapes AWS's docs and public Terraform/CDK projects write, provisioned end to
end over MQTT, checked as a user would check the registry afterwards, and checked offline with
`python -m emulator check-template`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hook_server import HookServer
from mqtt_support import CSR_TOPIC, KEYS_TOPIC, MqttTestClient

from emulator import Emulator

FIXTURES = Path(__file__).parent / "templates"
DOCS_PARAMETERS = {"ThingName": "bulb-1", "SerialNumber": "SN-1", "DeviceLocation": "Seattle"}


@pytest.fixture(scope="module")
def hook() -> Iterator[HookServer]:
    with HookServer() as server:
        yield server


@pytest.fixture(scope="module")
def fleet_emulator(tmp_path_factory: pytest.TempPathFactory, hook: HookServer) -> Iterator[Emulator]:
    templates = tmp_path_factory.mktemp("templates")
    for path in FIXTURES.glob("*.json"):
        shutil.copy(path, templates / path.name)
    hooked = templates / "hooked_override_fail.json"
    wrapper = json.loads(hooked.read_text())
    wrapper["preProvisioningHook"]["url"] = hook.url
    hooked.write_text(json.dumps(wrapper))
    emulator = Emulator(
        data_dir=tmp_path_factory.mktemp("data"), templates_dir=templates, key_algorithm="ec", key_pool_size=2
    ).start()
    yield emulator
    emulator.stop()


@pytest.fixture
def fleet(fleet_emulator: Emulator, hook: HookServer) -> Emulator:
    fleet_emulator.reset()
    hook.answer(200, {"allowProvisioning": True})
    hook.requests.clear()
    return fleet_emulator


@pytest.fixture
def client(fleet: Emulator) -> Iterator[MqttTestClient]:
    mqtt_client = MqttTestClient(fleet.urls["mqtt"]).connect()
    yield mqtt_client
    mqtt_client.close()


def provision(
    client: MqttTestClient, template: str, parameters: dict[str, str], csr: str | None = None
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """Create a certificate (keys, or from `csr`), then RegisterThing with `template`."""
    if csr is None:
        outcome, created = client.request(KEYS_TOPIC, {})
    else:
        outcome, created = client.request(CSR_TOPIC, {"certificateSigningRequest": csr})
    assert outcome == "accepted", created
    outcome, body = client.request(
        f"$aws/provisioning-templates/{template}/provision/json",
        {"certificateOwnershipToken": created["certificateOwnershipToken"], "parameters": parameters},
    )
    return created, outcome, body


def test_aws_docs_fleet_example_provisions_every_resource(fleet: Emulator, client: MqttTestClient) -> None:
    created, outcome, body = provision(client, "aws_docs_fleet", DOCS_PARAMETERS)
    assert (outcome, body) == (
        "accepted",
        {
            "thingName": "bulb-1",
            "deviceConfiguration": {
                "FallbackUrl": "https://www.example.com/test-site",
                "LocationUrl": "https://example.aws",
            },
        },
    )
    thing = fleet.registry.describe_thing("bulb-1")
    assert thing is not None
    assert thing["attributes"] == {"version": "v1", "serialNumber": "serialNumber"}
    assert thing["thingTypeName"] == "ThingTypePrefix_bulb-1"
    assert thing["thingGroups"] == ["WA", "v1-lightbulbs"]
    assert thing["billingGroup"] == "LightBulbBillingGroup"
    assert thing["principals"] == [created["certificateId"]]
    certificate = fleet.registry.describe_certificate(created["certificateId"])
    assert certificate is not None and certificate["status"] == "ACTIVE"  # "Active" in the file
    (policy_name,) = certificate["policyNames"]
    (policy,) = [p for p in fleet.registry.list_policies() if p["policyName"] == policy_name]
    assert json.loads(policy["policyDocument"])["Statement"][0]["Action"] == ["iot:Publish"]


def test_aws_docs_fleet_example_reprovisioning_applies_its_override_settings(
    fleet: Emulator, client: MqttTestClient
) -> None:
    provision(client, "aws_docs_fleet", DOCS_PARAMETERS)
    _, outcome, _ = provision(client, "aws_docs_fleet", DOCS_PARAMETERS)
    assert outcome == "accepted"
    thing = fleet.registry.describe_thing("bulb-1")
    assert thing is not None and len(thing["principals"]) == 2  # both certificates attached
    assert thing["thingGroups"] == ["WA", "v1-lightbulbs"]  # DO_NOTHING kept them


def test_aws_docs_fleet_example_rejects_a_location_missing_from_its_mappings(client: MqttTestClient) -> None:
    _, outcome, body = provision(client, "aws_docs_fleet", {**DOCS_PARAMETERS, "DeviceLocation": "Paris"})
    assert (outcome, body["statusCode"], body["errorCode"]) == ("rejected", 400, "InvalidParameterException")
    assert "Fn::FindInMap: key 'Paris' not in mapping 'LocationTable'" in body["errorMessage"]


def test_declared_certificate_id_parameter_is_never_required_from_the_caller(
    fleet: Emulator, client: MqttTestClient
) -> None:
    # Terraform's own example: the caller sends nothing for AWS::IoT::Certificate::Id.
    fleet.registry.create_policy(
        "DevicePolicy",
        json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Action": "iot:Subscribe", "Resource": "*"}],
            }
        ),
    )
    created, outcome, body = provision(client, "terraform_policy_by_name", {"SerialNumber": "TF-1"})
    assert (outcome, body) == ("accepted", {"thingName": "", "deviceConfiguration": {}})
    certificate = fleet.registry.describe_certificate(created["certificateId"])
    assert certificate is not None
    assert (certificate["status"], certificate["policyNames"]) == ("ACTIVE", ["DevicePolicy"])


def test_a_caller_sent_certificate_id_loses_to_the_real_one(fleet: Emulator, client: MqttTestClient) -> None:
    created, outcome, body = provision(
        client, "cdk_string_policy", {"SerialNumber": "CDK-1", "AWS::IoT::Certificate::Id": "f" * 64}
    )
    assert outcome == "accepted"
    assert body["deviceConfiguration"]["certificateId"] == created["certificateId"]


def test_policy_by_name_that_does_not_exist_is_rejected_and_nothing_changes(
    fleet: Emulator, client: MqttTestClient
) -> None:
    created, outcome, body = provision(client, "terraform_policy_by_name", {"SerialNumber": "TF-2"})
    assert (outcome, body["errorMessage"]) == ("rejected", "policy 'DevicePolicy' does not exist")
    assert fleet.registry.certificate_status(created["certificateId"]) == "PENDING_ACTIVATION"


def test_terraform_wrapper_with_named_inline_policy_creates_that_policy(
    fleet: Emulator, client: MqttTestClient, device_csr: tuple[str, str]
) -> None:
    created, outcome, body = provision(
        client, "terraform_named_inline_policy", {"SerialNumber": "TF-3"}, csr=device_csr[1]
    )
    assert (outcome, body) == ("accepted", {"thingName": "TF-3", "deviceConfiguration": {}})
    thing = fleet.registry.describe_thing("TF-3")
    assert thing is not None
    assert (thing["attributes"], thing["thingGroups"]) == ({"serial": "TF-3"}, ["fleet-devices"])
    certificate = fleet.registry.describe_certificate(created["certificateId"])
    assert certificate is not None and certificate["policyNames"] == ["TF-3-fleet-policy"]
    (policy,) = [p for p in fleet.registry.list_policies() if p["policyName"] == "TF-3-fleet-policy"]
    statements = json.loads(policy["policyDocument"])["Statement"]
    assert statements[0]["Resource"] == "arn:aws:iot:*:*:client/TF-3"
    assert statements[1]["Resource"] == "arn:aws:iot:*:*:topic/devices/TF-3/*"


def test_cdk_string_policy_and_parameter_defaults(fleet: Emulator, client: MqttTestClient) -> None:
    created, outcome, body = provision(client, "cdk_string_policy", {"SerialNumber": "C2"})
    assert outcome == "accepted"
    assert body == {
        "thingName": "sensor-v2_C2",
        "deviceConfiguration": {"certificateId": created["certificateId"], "topic": "devices/C2/telemetry"},
    }
    thing = fleet.registry.describe_thing("sensor-v2_C2")
    assert thing is not None
    assert thing["attributes"] == {"model": "sensor-v2", "site": "plant-1/line-4"}
    assert (thing["thingTypeName"], thing["thingGroups"]) == ("sensor-v2", ["plant-1"])
    certificate = fleet.registry.describe_certificate(created["certificateId"])
    assert certificate is not None and len(certificate["policyNames"]) == 1
    (policy,) = fleet.registry.list_policies()
    assert json.loads(policy["policyDocument"])["Statement"][0]["Action"] == "iot:Connect"


def test_inactive_status_registers_a_certificate_that_cannot_connect_yet(
    fleet: Emulator, client: MqttTestClient
) -> None:
    created, outcome, body = provision(client, "inactive_until_approved", {"SerialNumber": "I1"})
    assert (outcome, body["thingName"]) == ("accepted", "pending-I1")
    assert fleet.registry.certificate_status(created["certificateId"]) == "INACTIVE"
    thing = fleet.registry.describe_thing("pending-I1")
    assert thing is not None and thing["thingGroups"] == ["awaiting-approval"]


def test_pre_provisioning_hook_overrides_then_override_fail_refuses_a_second_device(
    fleet: Emulator, client: MqttTestClient, hook: HookServer
) -> None:
    hook.answer(200, {"allowProvisioning": True, "parameterOverrides": {"Owner": "acme"}})
    created, outcome, body = provision(client, "hooked_override_fail", {"SerialNumber": "H-1"})
    assert (outcome, body) == ("accepted", {"thingName": "H-1", "deviceConfiguration": {"owner": "acme"}})
    assert hook.events[0]["certificateId"] == created["certificateId"]
    assert hook.events[0]["templateArn"].endswith(":provisioningtemplate/hooked_override_fail")
    thing = fleet.registry.describe_thing("H-1")
    assert thing is not None and thing["attributes"] == {"owner": "acme"}

    again, outcome, body = provision(client, "hooked_override_fail", {"SerialNumber": "H-1"})
    assert (outcome, body["statusCode"], body["errorCode"]) == ("rejected", 409, "ResourceConflictsException")
    assert fleet.registry.certificate_status(again["certificateId"]) == "PENDING_ACTIVATION"


def test_attribute_value_outside_awss_rule_is_rejected_over_mqtt_naming_the_field(
    client: MqttTestClient,
) -> None:
    _, outcome, body = provision(client, "demo", {"SerialNumber": "V1", "DeviceLocation": "line 4\r\n"})
    assert (outcome, body["statusCode"], body["errorCode"]) == ("rejected", 400, "InvalidParameterException")
    assert body["errorMessage"].startswith("AttributePayload.Attributes.location: ")


def test_thing_name_outside_awss_rule_is_rejected_over_mqtt_naming_the_field(client: MqttTestClient) -> None:
    _, outcome, body = provision(client, "terraform_named_inline_policy", {"SerialNumber": "x" * 129})
    assert (outcome, body["errorCode"]) == ("rejected", "InvalidParameterException")
    assert body["errorMessage"].startswith("ThingName: is 129 characters, more than 128")


# -- check-template, offline -------------------------------------------------------------------


def check_template(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "emulator", "check-template", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_check_template_prints_what_register_thing_would_create() -> None:
    params = [f"--param={k}={v}" for k, v in DOCS_PARAMETERS.items()]
    result = check_template(str(FIXTURES / "aws_docs_fleet.json"), *params)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    for expected in (
        "Thing: bulb-1",
        "thing type: ThingTypePrefix_bulb-1",
        "thing groups: v1-lightbulbs, WA",
        "billing group: LightBulbBillingGroup",
        "attributes: version=v1, serialNumber=serialNumber",
        "AttributePayload=MERGE, ThingTypeName=REPLACE, ThingGroups=DO_NOTHING",
        "Certificate status: ACTIVE",
        "placeholder",
        '"LocationUrl": "https://example.aws"',
    ):
        assert expected in text, expected


def test_check_template_json_matches_what_the_emulator_creates(
    fleet: Emulator, client: MqttTestClient
) -> None:
    result = check_template(str(FIXTURES / "cdk_string_policy.json"), "--param", "SerialNumber=C9", "--json")
    assert result.returncode == 0, result.stderr
    offline = json.loads(result.stdout)
    assert offline["certificateId"] == "0" * 64 and "placeholder" in offline["certificateIdNote"]
    created, outcome, body = provision(client, "cdk_string_policy", {"SerialNumber": "C9"})
    assert outcome == "accepted"
    thing = fleet.registry.describe_thing(body["thingName"])
    assert thing is not None
    assert offline["thing"]["thingName"] == thing["thingName"]
    assert offline["thing"]["attributes"] == thing["attributes"]
    assert offline["thing"]["thingGroups"] == thing["thingGroups"]
    assert offline["thing"]["thingTypeName"] == thing["thingTypeName"]
    assert offline["certificateStatus"] == fleet.registry.certificate_status(created["certificateId"])
    assert offline["policies"][0]["policyName"] == fleet.registry.list_policies()[0]["policyName"]
    assert offline["deviceConfiguration"] == {**body["deviceConfiguration"], "certificateId": "0" * 64}


@pytest.mark.parametrize(
    "parameters",
    [
        {"SerialNumber": "bad serial"},  # ThingName rule
        {"SerialNumber": "ok", "Site": "line 4/x"},  # attribute value rule
        {},  # missing parameter
    ],
)
def test_check_template_rejects_with_the_emulators_exact_message(
    client: MqttTestClient, parameters: dict[str, str]
) -> None:
    _, outcome, body = provision(client, "cdk_string_policy", parameters)
    assert outcome == "rejected"
    args = [f"--param={k}={v}" for k, v in parameters.items()]
    result = check_template(str(FIXTURES / "cdk_string_policy.json"), *args, "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout) == {"rejected": body}
    text = check_template(str(FIXTURES / "cdk_string_policy.json"), *args)
    assert text.returncode == 1
    assert body["errorMessage"] in text.stdout


def test_check_template_reports_an_unreadable_file_with_status_2(tmp_path: Path) -> None:
    result = check_template(str(tmp_path / "missing.json"))
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr
