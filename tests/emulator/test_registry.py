"""The emulated AWS IoT account state: tokens, certificates, things, policies, persistence."""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from emulator.errors import ConfigError, InvalidRequest, InvalidToken, ResourceConflict
from emulator.registry import TOKEN_MESSAGE, Registry
from emulator.registry.overrides import override_thing
from emulator.registry.specs import Evaluation, PolicySpec, ThingSpec

POLICY = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": "*"}],
    }
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Iterator[Registry]:
    with Registry(":memory:", clock=clock) as reg:
        yield reg


def add_pending(registry: Registry) -> tuple[str, str]:
    certificate_id = secrets.token_hex(32)
    token = registry.new_ownership_token()
    registry.add_certificate(certificate_id, f"PEM of {certificate_id}", ownership_token=token)
    return certificate_id, token


def evaluation(thing: ThingSpec | None = None, *policies: PolicySpec, status: str = "ACTIVE") -> Evaluation:
    return Evaluation(thing=thing, certificate_status=status, policies=policies, device_configuration={})


# --- ownership tokens and certificates -------------------------------------------------------


def test_ownership_token_redeems_once(registry: Registry) -> None:
    certificate_id, token = add_pending(registry)

    assert registry.redeem_ownership_token(token) == certificate_id
    with pytest.raises(InvalidToken, match=TOKEN_MESSAGE):
        registry.redeem_ownership_token(token)


def test_ownership_token_is_valid_for_the_lifetime_only(registry: Registry, clock: FakeClock) -> None:
    certificate_id, token = add_pending(registry)
    _, late_token = add_pending(registry)

    clock.now += 3599
    assert registry.redeem_ownership_token(token) == certificate_id
    clock.now += 2
    with pytest.raises(InvalidToken) as caught:
        registry.redeem_ownership_token(late_token)
    assert caught.value.payload() == {
        "statusCode": 400,
        "errorCode": "InvalidCertificateOwnershipToken",
        "errorMessage": TOKEN_MESSAGE,
    }


def test_certificate_for_token_does_not_spend_the_token(registry: Registry) -> None:
    certificate_id, token = add_pending(registry)

    assert registry.certificate_for_token(token) == certificate_id
    assert registry.certificate_for_token(token) == certificate_id
    assert registry.redeem_ownership_token(token) == certificate_id
    with pytest.raises(InvalidToken):
        registry.certificate_for_token(token)


def test_unknown_ownership_token_is_rejected(registry: Registry) -> None:
    add_pending(registry)

    with pytest.raises(InvalidToken, match=TOKEN_MESSAGE):
        registry.redeem_ownership_token(registry.new_ownership_token())


def test_ownership_tokens_are_long_and_distinct(registry: Registry) -> None:
    tokens = {registry.new_ownership_token() for _ in range(100)}
    assert len(tokens) == 100
    assert min(len(t) for t in tokens) >= 64


def test_ownership_token_is_never_stored_in_clear(tmp_path: Path, clock: FakeClock) -> None:
    with Registry(tmp_path / "registry.sqlite3", clock=clock) as reg:
        _, token = add_pending(reg)
        stored = b"".join(path.read_bytes() for path in tmp_path.iterdir())

    assert token.encode() not in stored


def test_pending_certificate_is_deleted_after_the_lifetime(registry: Registry, clock: FakeClock) -> None:
    pending, _ = add_pending(registry)
    registered, token = add_pending(registry)
    registry.register_thing(registry.redeem_ownership_token(token), evaluation(), "tmpl")
    registry.add_certificate("claim", "claim PEM", status="ACTIVE")

    clock.now += 3600
    assert registry.expire_pending() == 0
    clock.now += 1
    assert registry.expire_pending() == 1

    assert registry.certificate_status(pending) is None
    assert registry.certificate_status(registered) == "ACTIVE"
    assert registry.certificate_status("claim") == "ACTIVE"


def test_adding_a_certificate_expires_old_pending_ones(registry: Registry, clock: FakeClock) -> None:
    pending, _ = add_pending(registry)
    clock.now += 3601

    add_pending(registry)

    assert registry.certificate_status(pending) is None


def test_claim_certificate_can_be_added_again_on_every_start(registry: Registry) -> None:
    registry.add_certificate("claim", "claim PEM", status="ACTIVE", owner="emulator")
    registry.add_certificate("claim", "claim PEM", status="ACTIVE", owner="emulator")

    assert [c["certificateId"] for c in registry.list_certificates()] == ["claim"]
    with pytest.raises(ResourceConflict):
        registry.add_certificate("claim", "other PEM", status="ACTIVE")


def test_set_certificate_status_checks_status_and_certificate(registry: Registry) -> None:
    certificate_id, _ = add_pending(registry)

    registry.set_certificate_status(certificate_id, "REVOKED")

    assert registry.certificate_status(certificate_id) == "REVOKED"
    with pytest.raises(InvalidRequest, match="BROKEN"):
        registry.set_certificate_status(certificate_id, "BROKEN")
    with pytest.raises(InvalidRequest, match="does not exist"):
        registry.set_certificate_status("nope", "ACTIVE")


# --- RegisterThing ---------------------------------------------------------------------------


def test_register_thing_creates_thing_attaches_certificate_and_activates_it(
    registry: Registry, clock: FakeClock
) -> None:
    registry.create_policy("DevicePolicy", POLICY)
    certificate_id, token = add_pending(registry)
    thing = ThingSpec("sensor-1", {"serial": "1"}, "Sensor", ("fleet",), "billing")

    name = registry.register_thing(
        registry.redeem_ownership_token(token),
        evaluation(thing, PolicySpec("DevicePolicy", None, "Policy")),
        "tmpl",
    )

    assert name == "sensor-1"
    assert registry.describe_thing("sensor-1") == {
        "thingName": "sensor-1",
        "attributes": {"serial": "1"},
        "thingTypeName": "Sensor",
        "thingGroups": ["fleet"],
        "billingGroup": "billing",
        "principals": [certificate_id],
    }
    certificate = registry.describe_certificate(certificate_id)
    assert certificate is not None
    assert certificate["status"] == "ACTIVE"
    assert certificate["thingNames"] == ["sensor-1"]
    assert certificate["policyNames"] == ["DevicePolicy"]
    assert certificate["certificatePem"] == f"PEM of {certificate_id}"
    assert registry.list_template_uses() == [
        {
            "templateName": "tmpl",
            "certificateId": certificate_id,
            "thingName": "sensor-1",
            "usedAt": clock.now,
        }
    ]
    assert [t["thingName"] for t in registry.list_things()] == ["sensor-1"]


def test_register_thing_applies_an_inactive_status(registry: Registry) -> None:
    certificate_id, _ = add_pending(registry)

    registry.register_thing(certificate_id, evaluation(status="INACTIVE"), "tmpl")

    assert registry.certificate_status(certificate_id) == "INACTIVE"


def test_register_thing_without_a_thing_only_activates_the_certificate(
    registry: Registry,
) -> None:
    certificate_id, _ = add_pending(registry)

    assert registry.register_thing(certificate_id, evaluation(), "tmpl") == ""

    assert registry.certificate_status(certificate_id) == "ACTIVE"
    assert registry.list_things() == []


def test_register_thing_for_a_deleted_certificate_is_an_invalid_token(
    registry: Registry,
) -> None:
    with pytest.raises(InvalidToken):
        registry.register_thing("gone", evaluation(ThingSpec("t")), "tmpl")


def test_register_thing_spends_the_token_only_when_it_succeeds(registry: Registry) -> None:
    certificate_id, token = add_pending(registry)
    missing_policy = evaluation(ThingSpec("t"), PolicySpec("missing", None))

    with pytest.raises(InvalidRequest):
        registry.register_thing(certificate_id, missing_policy, "tmpl", ownership_token=token)
    registry.register_thing(certificate_id, evaluation(ThingSpec("t")), "tmpl", ownership_token=token)

    assert registry.certificate_status(certificate_id) == "ACTIVE"
    with pytest.raises(InvalidToken):
        registry.redeem_ownership_token(token)


def test_register_thing_refuses_a_token_of_another_certificate(registry: Registry) -> None:
    certificate_id, _ = add_pending(registry)
    _, other_token = add_pending(registry)

    with pytest.raises(InvalidToken):
        registry.register_thing(certificate_id, evaluation(), "tmpl", ownership_token=other_token)

    assert registry.certificate_status(certificate_id) == "PENDING_ACTIVATION"
    assert registry.certificate_for_token(other_token)


OLD = ThingSpec("thing", {"a": "1", "b": "2"}, "old-type", ("g1",))


@pytest.mark.parametrize(
    ("setting", "attributes", "thing_type", "groups"),
    [
        ("DO_NOTHING", {"a": "1", "b": "2"}, "old-type", ["g1"]),
        ("REPLACE", {"b": "3", "c": "4"}, "new-type", ["g2"]),
        ("MERGE", {"a": "1", "b": "3", "c": "4"}, "new-type", ["g1", "g2"]),
    ],
)
def test_register_thing_applies_override_settings_to_an_existing_thing(
    registry: Registry,
    setting: str,
    attributes: dict[str, str],
    thing_type: str,
    groups: list[str],
) -> None:
    first, _ = add_pending(registry)
    registry.register_thing(first, evaluation(OLD), "tmpl")
    second, _ = add_pending(registry)
    new = ThingSpec(
        "thing",
        {"b": "3", "c": "4"},
        "new-type",
        ("g2",),
        override_settings={
            "AttributePayload": setting,
            "ThingTypeName": setting,
            "ThingGroups": setting,
        },
    )

    registry.register_thing(second, evaluation(new), "tmpl")

    thing = registry.describe_thing("thing")
    assert thing is not None
    assert (thing["attributes"], thing["thingTypeName"], thing["thingGroups"]) == (
        attributes,
        thing_type,
        groups,
    )
    assert thing["principals"] == sorted([first, second])


def test_register_thing_with_override_fail_changes_nothing(registry: Registry) -> None:
    first, _ = add_pending(registry)
    registry.register_thing(first, evaluation(OLD), "tmpl")
    second, _ = add_pending(registry)
    new = ThingSpec("thing", {"b": "3"}, override_settings={"AttributePayload": "FAIL"})

    with pytest.raises(ResourceConflict) as caught:
        registry.register_thing(second, evaluation(new), "tmpl")

    assert caught.value.message == "thing 'thing' already exists and OverrideSettings is FAIL"
    assert caught.value.payload()["errorCode"] == "ResourceConflictsException"
    assert registry.certificate_status(second) == "PENDING_ACTIVATION"
    thing = registry.describe_thing("thing")
    assert thing is not None
    assert (thing["attributes"], thing["principals"]) == ({"a": "1", "b": "2"}, [first])
    assert len(registry.list_template_uses()) == 1


def test_register_thing_uses_the_configured_default_override(clock: FakeClock) -> None:
    with Registry(":memory:", clock=clock, default_override="REPLACE") as registry:
        first, _ = add_pending(registry)
        registry.register_thing(first, evaluation(OLD), "tmpl")
        second, _ = add_pending(registry)

        registry.register_thing(second, evaluation(ThingSpec("thing", {"z": "9"})), "tmpl")

        thing = registry.describe_thing("thing")
    assert thing is not None
    assert (thing["attributes"], thing["thingTypeName"], thing["thingGroups"]) == (
        {"z": "9"},
        None,
        [],
    )


def test_override_merge_keeps_single_values_the_template_leaves_out() -> None:
    existing = ThingSpec("t", {}, "type", ("g1",), "billing")
    new = ThingSpec("t", {}, None, ("g1", "g2"), None)

    merged = override_thing(existing, new, "MERGE")

    assert (merged.thing_type_name, merged.billing_group, merged.thing_groups) == (
        "type",
        "billing",
        ("g1", "g2"),
    )


def test_override_billing_group_key_is_honoured() -> None:
    existing = ThingSpec("t", {"a": "1"}, billing_group="old")
    new = ThingSpec("t", {"a": "2"}, billing_group="new", override_settings={"BillingGroup": "REPLACE"})

    result = override_thing(existing, new, "DO_NOTHING")

    assert (result.attributes, result.billing_group) == ({"a": "1"}, "new")


def test_override_rejects_an_unknown_setting() -> None:
    new = ThingSpec("t", override_settings={"ThingGroups": "APPEND"})

    with pytest.raises(InvalidRequest, match="OverrideSettings ThingGroups 'APPEND'"):
        override_thing(ThingSpec("t"), new, "DO_NOTHING")


def test_registry_refuses_an_unknown_default_override() -> None:
    with pytest.raises(ConfigError, match="default_override"):
        Registry(":memory:", default_override="OVERWRITE")


def test_register_thing_rejects_a_missing_policy_and_changes_nothing(
    registry: Registry,
) -> None:
    certificate_id, _ = add_pending(registry)

    with pytest.raises(InvalidRequest) as caught:
        registry.register_thing(
            certificate_id, evaluation(ThingSpec("t"), PolicySpec("missing", None)), "tmpl"
        )

    assert caught.value.payload() == {
        "statusCode": 400,
        "errorCode": "InvalidParameterException",
        "errorMessage": "policy 'missing' does not exist",
    }
    assert registry.describe_thing("t") is None
    assert registry.certificate_status(certificate_id) == "PENDING_ACTIVATION"


def test_register_thing_creates_an_inline_policy_once(registry: Registry) -> None:
    spec = PolicySpec(None, POLICY, "Policy")
    first, _ = add_pending(registry)
    second, _ = add_pending(registry)

    registry.register_thing(first, evaluation(ThingSpec("a"), spec), "tmpl")
    registry.register_thing(second, evaluation(ThingSpec("b"), spec), "tmpl")

    policies = registry.list_policies()
    assert len(policies) == 1
    assert policies[0]["policyName"].startswith("tmpl-Policy-")
    assert json.loads(policies[0]["policyDocument"]) == json.loads(POLICY)
    certificate = registry.describe_certificate(second)
    assert certificate is not None
    assert certificate["policyNames"] == [policies[0]["policyName"]]


def test_register_thing_rejects_an_inline_policy_that_is_not_json(registry: Registry) -> None:
    certificate_id, _ = add_pending(registry)

    with pytest.raises(InvalidRequest, match="not a JSON object"):
        registry.register_thing(certificate_id, evaluation(None, PolicySpec(None, "{", "P")), "t")


def test_create_policy_conflicts_only_on_a_different_document(registry: Registry) -> None:
    registry.create_policy("p", POLICY)
    registry.create_policy("p", json.dumps(json.loads(POLICY), indent=2))

    with pytest.raises(ResourceConflict):
        registry.create_policy("p", "{}")
    registry.create_policy("p", "{}", replace=True)
    assert registry.list_policies()[0]["policyDocument"] == "{}"


# --- persistence, reset, threads -------------------------------------------------------------


def test_state_survives_reopening_the_file(tmp_path: Path, clock: FakeClock) -> None:
    path = tmp_path / "registry.sqlite3"
    with Registry(path, clock=clock) as registry:
        certificate_id, token = add_pending(registry)
        registry.register_thing(
            registry.redeem_ownership_token(token),
            evaluation(ThingSpec("kept", {"k": "v"})),
            "tmpl",
        )
        _, unused_token = add_pending(registry)
        before = (
            registry.list_things(),
            registry.list_certificates(),
            registry.list_template_uses(),
        )

    with Registry.in_data_dir(tmp_path, clock=clock) as registry:
        assert (
            registry.list_things(),
            registry.list_certificates(),
            registry.list_template_uses(),
        ) == before
        with pytest.raises(InvalidToken):
            registry.redeem_ownership_token(token)
        assert registry.redeem_ownership_token(unused_token)


def test_registry_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    Registry(path).close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()

    with pytest.raises(ConfigError, match="schema version 99"):
        Registry(path)


def test_registry_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    path.write_bytes(b"not a database" * 100)

    with pytest.raises(ConfigError, match="cannot open registry"):
        Registry(path)


def test_reset_empties_everything_and_keeps_working(registry: Registry) -> None:
    registry.create_policy("p", POLICY)
    certificate_id, _ = add_pending(registry)
    registry.register_thing(certificate_id, evaluation(ThingSpec("t"), PolicySpec("p", None)), "tmpl")

    registry.reset()

    assert (
        registry.list_things(),
        registry.list_certificates(),
        registry.list_policies(),
        registry.list_template_uses(),
    ) == ([], [], [], [])
    certificate_id, token = add_pending(registry)
    assert registry.redeem_ownership_token(token) == certificate_id


def test_registry_is_safe_to_use_from_many_threads(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite3")
    results: dict[str, str] = {}
    errors: list[BaseException] = []
    results_lock = threading.Lock()

    def work() -> None:
        try:
            for _ in range(25):
                certificate_id, token = add_pending(registry)
                redeemed = registry.redeem_ownership_token(token)
                registry.register_thing(redeemed, evaluation(ThingSpec(redeemed[:12])), "tmpl")
                registry.list_certificates()
                with results_lock:
                    results[certificate_id] = redeemed
        except BaseException as exc:  # reported to the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
            assert not thread.is_alive()
    finally:
        registry.close()

    assert errors == []
    assert len(results) == 200
    assert all(key == value for key, value in results.items())
    with Registry(tmp_path / "registry.sqlite3") as reopened:
        assert len(reopened.list_certificates()) == 200
        assert len(reopened.list_things()) == 200
