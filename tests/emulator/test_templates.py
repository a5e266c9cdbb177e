"""Provisioning templates: the intrinsic-function engine, resources, and the template store."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import pytest

from emulator.errors import ConfigError, InvalidRequest, TemplateError, TemplateNotFound
from emulator.fleet.templates import MAX_DEPTH, Template, TemplateStore, evaluate

CERT_ID = "c0ffee" + "0" * 58


def thing_template(name_node: Any, **extra: Any) -> dict[str, Any]:
    """A body with one declared String parameter ``Serial`` and a thing named by ``name_node``."""
    body: dict[str, Any] = {
        "Parameters": {"Serial": {"Type": "String"}},
        "Resources": {"thing": {"Type": "AWS::IoT::Thing", "Properties": {"ThingName": name_node}}},
    }
    body.update(extra)
    return body


def run(body: dict[str, Any], parameters: dict[str, str] | None = None, name: str = "t"):
    return evaluate(Template(name=name, body=body), parameters or {}, CERT_ID)


def thing_name(name_node: Any, parameters: dict[str, str] | None = None, **extra: Any) -> str:
    evaluation = run(thing_template(name_node, **extra), {"Serial": "SN1", **(parameters or {})})
    assert evaluation.thing is not None
    return evaluation.thing.thing_name


def configuration(value: Any, parameters: dict[str, str] | None = None, **extra: Any) -> str:
    body = {
        "Parameters": {"Serial": {"Type": "String", "Default": "SN1"}},
        "DeviceConfiguration": {"value": value},
        **extra,
    }
    return run(body, parameters).device_configuration["value"]


# --- parameters -----------------------------------------------------------------------------


def test_ref_resolves_a_supplied_parameter() -> None:
    assert thing_name({"Ref": "Serial"}) == "SN1"


def test_ref_resolves_the_certificate_id_pseudo_parameter() -> None:
    assert configuration({"Ref": "AWS::IoT::Certificate::Id"}) == CERT_ID


def test_parameter_default_applies_when_not_supplied() -> None:
    assert configuration({"Ref": "Serial"}) == "SN1"


def test_supplied_parameter_overrides_default() -> None:
    assert configuration({"Ref": "Serial"}, {"Serial": "SN9"}) == "SN9"


def test_number_and_list_parameter_types_read_as_strings() -> None:
    body = {
        "Parameters": {"N": {"Type": "Number", "Default": 7}, "L": {"Type": "CommaDelimitedList"}},
        "DeviceConfiguration": {"n": {"Ref": "N"}, "l": {"Ref": "L"}},
    }
    assert run(body, {"L": "a,b"}).device_configuration == {"n": "7", "l": "a,b"}


def test_declared_certificate_id_parameter_is_supplied_not_required() -> None:
    # The most common real shape: Terraform/CDK templates declare it as {"Type": "String"}.
    body = {
        "Parameters": {"AWS::IoT::Certificate::Id": {"Type": "String"}},
        "DeviceConfiguration": {
            "id": {"Ref": "AWS::IoT::Certificate::Id"},
            "sub": {"Fn::Sub": "c-${AWS::IoT::Certificate::Id}"},
        },
    }
    assert run(body).device_configuration == {"id": CERT_ID, "sub": f"c-{CERT_ID}"}


def test_caller_sent_or_default_certificate_id_loses_to_the_real_one() -> None:
    body = {
        "Parameters": {"AWS::IoT::Certificate::Id": {"Type": "String", "Default": "d" * 64}},
        "DeviceConfiguration": {"id": {"Ref": "AWS::IoT::Certificate::Id"}},
    }
    evaluation = run(body, {"AWS::IoT::Certificate::Id": "f" * 64})
    assert evaluation.device_configuration == {"id": CERT_ID}


def test_missing_required_parameter_is_rejected_naming_it() -> None:
    body = {"Parameters": {"SerialNumber": {"Type": "String"}}}
    with pytest.raises(TemplateError) as caught:
        run(body, name="demo")
    assert caught.value.message == (
        "parameter 'SerialNumber' is required by template 'demo' and was not supplied"
    )
    assert caught.value.status == 400


def test_undeclared_supplied_parameters_are_ignored() -> None:
    # AWS ignores parameters the template does not declare; they are not referable either.
    assert thing_name({"Ref": "Serial"}, {"Extra": "x"}) == "SN1"
    with pytest.raises(TemplateError, match="Ref to unknown parameter 'Extra'"):
        thing_name({"Ref": "Extra"}, {"Extra": "x"})


def test_ref_to_unknown_parameter_is_rejected_with_its_location() -> None:
    with pytest.raises(TemplateError) as caught:
        thing_name({"Ref": "Serail"})
    assert caught.value.message == ("Resources.thing.Properties.ThingName: Ref to unknown parameter 'Serail'")


def test_unknown_parameter_type_is_rejected() -> None:
    with pytest.raises(TemplateError, match=r"Parameters.P.Type: must be one of"):
        run({"Parameters": {"P": {"Type": "Boolean", "Default": "x"}}})


def test_non_string_supplied_parameter_is_an_invalid_request() -> None:
    with pytest.raises(InvalidRequest, match="parameter 'Serial' must be a string"):
        run(thing_template({"Ref": "Serial"}), {"Serial": 5})  # type: ignore[dict-item]


# --- intrinsic functions ----------------------------------------------------------------------


def test_join_concatenates_with_delimiter() -> None:
    assert thing_name({"Fn::Join": ["-", ["dev", {"Ref": "Serial"}, 3]]}) == "dev-SN1-3"


def test_select_picks_by_integer_or_digit_string_index() -> None:
    assert configuration({"Fn::Select": [1, ["a", "b"]]}) == "b"
    assert configuration({"Fn::Select": ["0", ["a", "b"]]}) == "a"


def test_select_out_of_range_is_rejected() -> None:
    with pytest.raises(TemplateError, match=r"Fn::Select: index 5 out of range for list of 2"):
        configuration({"Fn::Select": [5, ["a", "b"]]})


def test_select_rejects_a_negative_or_non_numeric_index() -> None:
    for index in (-1, "x", True):
        with pytest.raises(TemplateError, match="index must be a non-negative integer"):
            configuration({"Fn::Select": [index, ["a"]]})


def test_split_returns_a_list_for_select() -> None:
    assert configuration({"Fn::Select": [2, {"Fn::Split": [":", "a:b:c"]}]}) == "c"


def test_split_rejects_an_empty_delimiter() -> None:
    with pytest.raises(TemplateError, match="Fn::Split: the delimiter is empty"):
        configuration({"Fn::Select": [0, {"Fn::Split": ["", "abc"]}]})


def test_sub_string_form_substitutes_parameters_and_certificate_id() -> None:
    value = configuration({"Fn::Sub": "${Serial}/${AWS::IoT::Certificate::Id}"})
    assert value == f"SN1/{CERT_ID}"


def test_sub_escapes_literal_with_bang() -> None:
    assert configuration({"Fn::Sub": "${!Serial}-${Serial}"}) == "${Serial}-SN1"


def test_sub_list_form_uses_variables_before_parameters() -> None:
    node = {
        "Fn::Sub": [
            "${Serial}-${Site}",
            {"Site": {"Fn::Join": ["", ["s", "1"]]}, "Serial": "override"},
        ]
    }
    assert configuration(node) == "override-s1"


def test_sub_unknown_variable_is_rejected() -> None:
    with pytest.raises(TemplateError, match=r"Fn::Sub: unknown variable '\$\{Nope\}'"):
        configuration({"Fn::Sub": "x-${Nope}"})


def test_sub_does_not_expand_placeholders_inside_parameter_values() -> None:
    # A device-supplied value containing ${...} stays literal.
    assert (
        configuration({"Fn::Sub": "${Serial}"}, {"Serial": "${AWS::IoT::Certificate::Id}"})
        == "${AWS::IoT::Certificate::Id}"
    )


def test_find_in_map_looks_up_two_levels() -> None:
    mappings = {"Sites": {"berlin": {"Group": "eu-devices"}}}
    node = {"Fn::FindInMap": ["Sites", {"Ref": "Serial"}, "Group"]}
    assert configuration(node, {"Serial": "berlin"}, Mappings=mappings) == "eu-devices"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["N", "a", "b"], "Fn::FindInMap: mapping 'N' does not exist"),
        (["M", "x", "b"], "Fn::FindInMap: key 'x' not in mapping 'M'"),
        (["M", "a", "y"], "Fn::FindInMap: key 'y' not in mapping 'M'.a"),
    ],
)
def test_find_in_map_rejects_missing_mapping_and_keys(arguments: list, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        configuration({"Fn::FindInMap": arguments}, Mappings={"M": {"a": {"b": "v"}}})


def test_functions_nest() -> None:
    node = {
        "Fn::Join": [
            "_",
            [
                {"Fn::Select": [1, {"Fn::Split": ["-", {"Fn::Sub": "x-${Serial}-y"}]}]},
                {"Fn::FindInMap": ["M", "k", {"Ref": "Serial"}]},
            ],
        ]
    }
    assert thing_name(node, Mappings={"M": {"k": {"SN1": "found"}}}) == "SN1_found"


def test_unknown_function_is_rejected_with_its_location() -> None:
    with pytest.raises(TemplateError) as caught:
        thing_name({"Fn::If": ["c", "a", "b"]})
    assert caught.value.message == "Resources.thing.Properties.ThingName: unknown function 'Fn::If'"


def test_function_with_wrong_argument_shape_is_rejected() -> None:
    with pytest.raises(TemplateError, match=r"Fn::Join: expects \[delimiter, list\]"):
        thing_name({"Fn::Join": ["-"]})


def test_nesting_beyond_the_depth_bound_is_rejected() -> None:
    node: Any = {"Ref": "Serial"}
    for _ in range(MAX_DEPTH + 1):
        node = {"Fn::Join": ["", [node]]}
    with pytest.raises(TemplateError, match=f"nested deeper than {MAX_DEPTH} levels"):
        thing_name(node)


def test_deeply_nested_literal_does_not_exhaust_the_stack() -> None:
    node: Any = "x"
    for _ in range(5000):
        node = [node]
    with pytest.raises(TemplateError, match="nested deeper"):
        configuration(node)


# --- resources --------------------------------------------------------------------------------


def test_thing_properties_are_evaluated() -> None:
    body = thing_template({"Ref": "Serial"})
    body["Resources"]["thing"]["Properties"].update(
        {
            "AttributePayload": {"serial": {"Ref": "Serial"}, "version": 2},
            "ThingTypeName": "sensor",
            "ThingGroups": {"Fn::Split": [",", "g1,g2"]},
            "BillingGroup": "b1",
        }
    )
    thing = run(body, {"Serial": "SN1"}).thing
    assert thing is not None
    assert (
        thing.thing_name,
        thing.attributes,
        thing.thing_type_name,
        thing.thing_groups,
        thing.billing_group,
        thing.override_settings,
    ) == ("SN1", {"serial": "SN1", "version": "2"}, "sensor", ("g1", "g2"), "b1", {})


def test_invalid_thing_name_is_rejected() -> None:
    for bad in ("has space", "", "x" * 129, "slash/ed"):
        with pytest.raises(TemplateError, match="^ThingName: .*(not 1-128 characters|more than 128)"):
            thing_name({"Ref": "Serial"}, {"Serial": bad})
    assert thing_name({"Ref": "Serial"}, {"Serial": "a:b_c-D9" + "x" * 120}).startswith("a:b")


def test_missing_thing_name_is_rejected() -> None:
    body = thing_template("x")
    del body["Resources"]["thing"]["Properties"]["ThingName"]
    with pytest.raises(TemplateError, match="ThingName: is required"):
        run(body, {"Serial": "SN1"})


def test_nested_attribute_payload_is_rejected() -> None:
    body = thing_template("x")
    body["Resources"]["thing"]["Properties"]["AttributePayload"] = {"a": {"b": "c"}}
    with pytest.raises(TemplateError, match="AttributePayload.a: expected a string, got an obj"):
        run(body, {"Serial": "SN1"})


def test_override_settings_are_copied_to_the_thing_spec() -> None:
    body = thing_template("x")
    settings = {"AttributePayload": "MERGE", "ThingTypeName": "REPLACE", "ThingGroups": "FAIL"}
    body["Resources"]["thing"]["OverrideSettings"] = settings
    thing = run(body, {"Serial": "SN1"}).thing
    assert thing is not None and thing.override_settings == settings


def test_override_settings_reject_unknown_values_and_keys() -> None:
    for settings, message in [
        ({"ThingGroups": "KEEP"}, "OverrideSettings.ThingGroups: must be"),
        ({"Colour": "MERGE"}, "OverrideSettings: must be one of"),
    ]:
        body = thing_template("x")
        body["Resources"]["thing"]["OverrideSettings"] = settings
        with pytest.raises(TemplateError, match=message):
            run(body, {"Serial": "SN1"})


def test_at_most_one_thing_is_allowed() -> None:
    body = thing_template("x")
    body["Resources"]["second"] = body["Resources"]["thing"]
    with pytest.raises(TemplateError, match="at most one AWS::IoT::Thing"):
        run(body, {"Serial": "SN1"})


def certificate(properties: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": {"cert": {"Type": "AWS::IoT::Certificate", "Properties": properties}}}


def test_certificate_status_defaults_to_active_and_accepts_inactive() -> None:
    ref = {"Ref": "AWS::IoT::Certificate::Id"}
    assert run(certificate({"CertificateId": ref})).certificate_status == "ACTIVE"
    evaluation = run(certificate({"CertificateId": ref, "Status": "INACTIVE"}))
    assert evaluation.certificate_status == "INACTIVE"
    with pytest.raises(TemplateError, match="Status: must be one of ACTIVE, INACTIVE"):
        run(certificate({"CertificateId": ref, "Status": "REVOKED"}))


@pytest.mark.parametrize(
    ("written", "status"),
    [("Active", "ACTIVE"), ("active", "ACTIVE"), ("ACTIVE", "ACTIVE"), ("Inactive", "INACTIVE")],
)
def test_certificate_status_is_read_in_any_letter_case(written: str, status: str) -> None:
    ref = {"Ref": "AWS::IoT::Certificate::Id"}
    assert run(certificate({"CertificateId": ref, "Status": written})).certificate_status == status


def test_certificate_id_must_be_the_provisioned_certificate() -> None:
    with pytest.raises(TemplateError, match="CertificateId: must be"):
        run(certificate({"CertificateId": "someone-elses"}))
    with pytest.raises(TemplateError, match="CertificateId: expected a string, got null"):
        run(certificate({}))


def policy(properties: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": {"pol": {"Type": "AWS::IoT::Policy", "Properties": properties}}}


def test_policy_by_name() -> None:
    (spec,) = run(policy({"PolicyName": "DevicePolicy"})).policies
    assert (spec.policy_name, spec.policy_document, spec.logical_id) == (
        "DevicePolicy",
        None,
        "pol",
    )


def test_policy_inline_document_as_object_or_json_string() -> None:
    document = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "iot:Connect", "Resource": {"Fn::Sub": "c/${!x}"}}],
    }
    (spec,) = run(policy({"PolicyDocument": document})).policies
    assert spec.policy_name is None
    assert json.loads(spec.policy_document or "")["Statement"][0]["Resource"] == "c/${x}"
    text = '{"Version": "2012-10-17", "Statement": []}'
    (spec,) = run(policy({"PolicyDocument": text})).policies
    assert spec.policy_document == text


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"PolicyDocument": "{not json"}, "PolicyDocument: is not valid JSON"),
        ({"PolicyDocument": "[]"}, "PolicyDocument: expected an object, got a list"),
        ({"PolicyDocument": 5}, "PolicyDocument: expected an object"),
        ({"PolicyName": "bad name"}, "PolicyName: 'bad name' is not 1-128 characters"),
        ({}, "a policy needs PolicyName or PolicyDocument"),
    ],
)
def test_policy_rejects_invalid_documents_and_names(properties: dict, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        run(policy(properties))


def test_unknown_resource_type_is_rejected() -> None:
    body = {"Resources": {"q": {"Type": "AWS::SQS::Queue", "Properties": {}}}}
    with pytest.raises(TemplateError, match=r"Resources.q.Type: must be one of .*'AWS::SQS::Queue'"):
        run(body)


def test_device_configuration_numbers_become_strings() -> None:
    body = {"DeviceConfiguration": {"port": 8883, "ratio": 0.5, "name": "x"}}
    assert run(body).device_configuration == {"port": "8883", "ratio": "0.5", "name": "x"}


def test_non_flat_device_configuration_is_rejected() -> None:
    for value in ({"nested": "x"}, ["a"], True, None):
        with pytest.raises(TemplateError, match=r"DeviceConfiguration.value: .*must be flat"):
            configuration(value)


def test_template_without_resources_evaluates_to_no_thing() -> None:
    evaluation = run({})
    assert (
        evaluation.thing,
        evaluation.certificate_status,
        evaluation.policies,
        evaluation.device_configuration,
    ) == (None, "ACTIVE", (), {})


# --- the store --------------------------------------------------------------------------------

DEMO_PARAMETERS = {"SerialNumber": "SN42"}


def write(directory: Path, name: str, content: Any) -> None:
    text = content if isinstance(content, str) else json.dumps(content)
    (directory / name).write_text(text, encoding="utf-8")


def test_demo_template_ships_with_the_package() -> None:
    store = TemplateStore(None)
    assert store.names() == ["demo"]
    evaluation = evaluate(store.get("demo"), DEMO_PARAMETERS, CERT_ID)
    assert evaluation.thing is not None
    assert evaluation.thing.thing_name == "demo-SN42"
    assert evaluation.thing.attributes == {"serial": "SN42", "location": "factory"}
    assert evaluation.certificate_status == "ACTIVE"
    (spec,) = evaluation.policies
    actions = json.loads(spec.policy_document or "")["Statement"][0]["Action"]
    assert set(actions) == {"iot:Connect", "iot:Publish", "iot:Subscribe", "iot:Receive"}
    assert evaluation.device_configuration == {"location": "factory", "serial": "SN42"}


def test_demo_template_requires_serial_number() -> None:
    with pytest.raises(TemplateError, match="'SerialNumber' is required by template 'demo'"):
        evaluate(TemplateStore(None).get("demo"), {}, CERT_ID)


def test_store_loads_plain_and_wrapped_templates(tmp_path: Path) -> None:
    body = {"DeviceConfiguration": {"k": "v"}}
    write(tmp_path, "plain.json", body)
    write(
        tmp_path,
        "wrapped.json",
        {
            "templateBody": json.dumps(body),
            "enabled": True,
            "preProvisioningHook": {"url": "http://127.0.0.1:1/h", "timeoutSeconds": 2},
        },
    )
    store = TemplateStore(tmp_path)
    assert store.names() == ["demo", "plain", "wrapped"]
    plain, wrapped = store.get("plain"), store.get("wrapped")
    assert plain == Template(name="plain", body=body)
    assert (
        wrapped.body,
        wrapped.pre_provisioning_hook_url,
        wrapped.pre_provisioning_hook_timeout,
    ) == (body, "http://127.0.0.1:1/h", 2.0)


def test_store_reads_edits_on_every_get(tmp_path: Path) -> None:
    write(tmp_path, "t.json", {"DeviceConfiguration": {"k": "1"}})
    store = TemplateStore(tmp_path)
    assert store.get("t").body["DeviceConfiguration"] == {"k": "1"}
    write(tmp_path, "t.json", {"DeviceConfiguration": {"k": "2"}})
    assert store.get("t").body["DeviceConfiguration"] == {"k": "2"}


def test_store_directory_demo_overrides_packaged_demo(tmp_path: Path) -> None:
    write(tmp_path, "demo.json", {"DeviceConfiguration": {"mine": "yes"}})
    assert TemplateStore(tmp_path).get("demo").body == {"DeviceConfiguration": {"mine": "yes"}}


def test_store_falls_back_to_packaged_demo(tmp_path: Path) -> None:
    write(tmp_path, "other.json", {})
    store = TemplateStore(tmp_path)
    assert store.names() == ["demo", "other"]
    assert "SerialNumber" in store.get("demo").body["Parameters"]


def test_store_missing_template_is_not_found(tmp_path: Path) -> None:
    store = TemplateStore(tmp_path)
    with pytest.raises(TemplateNotFound) as caught:
        store.get("x")
    assert caught.value.message == "template 'x' does not exist"
    with pytest.raises(TemplateNotFound):
        store.get("../etc/passwd")


def test_store_invalid_json_is_a_template_error_naming_the_file(tmp_path: Path) -> None:
    write(tmp_path, "broken.json", '{"Parameters": ')
    write(tmp_path, "deep.json", "[" * 100_000)
    write(tmp_path, "badbody.json", {"templateBody": "{nope"})
    store = TemplateStore(tmp_path)
    for name in ("broken", "deep", "badbody"):
        with pytest.raises(TemplateError, match=rf"{name}\.json.*not valid JSON"):
            store.get(name)


def test_store_disabled_template_is_rejected(tmp_path: Path) -> None:
    write(tmp_path, "off.json", {"templateBody": {}, "enabled": False})
    with pytest.raises(TemplateError) as caught:
        TemplateStore(tmp_path).get("off")
    assert (caught.value.message, caught.value.status, caught.value.code) == (
        "template 'off' is disabled",
        400,
        "InvalidRequestException",
    )
    with pytest.raises(TemplateError) as caught:
        TemplateStore(tmp_path, disabled=(403, "Disabled")).get("off")
    assert (caught.value.status, caught.value.code) == (403, "Disabled")


def test_store_rejects_a_hook_url_that_is_not_http(tmp_path: Path) -> None:
    write(tmp_path, "h.json", {"templateBody": {}, "preProvisioningHook": {"url": "file:///x"}})
    with pytest.raises(TemplateError, match="preProvisioningHook.url must be an http"):
        TemplateStore(tmp_path).get("h")


def test_store_ignores_other_files_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    write(tmp_path, "notes.txt", "hello")
    write(tmp_path, "bad name.json", {})
    write(tmp_path, ".gitkeep", "")
    with caplog.at_level(logging.WARNING, logger="emulator.fleet.templates"):
        store = TemplateStore(tmp_path)
        store.names()
    assert store.names() == ["demo"]
    warned = sorted(r.getMessage().split(":")[0] for r in caplog.records)
    assert warned == [
        f"ignoring {tmp_path / 'bad name.json'}",
        f"ignoring {tmp_path / 'notes.txt'}",
    ]


def test_store_requires_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        TemplateStore(tmp_path / "missing")


# --- AWS's naming rules -----------------------------------------------------------------------


def attributed(value: str, name: str = "serial") -> dict[str, Any]:
    body = thing_template("dev-1")
    body["Resources"]["thing"]["Properties"]["AttributePayload"] = {name: value}
    return body


@pytest.mark.parametrize(
    "value",
    ["line\r\nbreak", "nul\x00", "lone\ud800", "has space", "x" * 801, "x" * 2048, "caf\u00e9"],
    ids=["crlf", "nul", "lone-surrogate", "space", "801", "2048", "non-ascii"],
)
def test_attribute_values_outside_awss_rule_are_refused_naming_the_field(value: str) -> None:
    with pytest.raises(TemplateError) as caught:
        run(attributed(value), {"Serial": "SN1"})
    assert caught.value.message.startswith("AttributePayload.Attributes.serial: ")
    assert caught.value.payload()["errorCode"] == "InvalidParameterException"
    assert caught.value.payload()["statusCode"] == 400
    json.dumps(caught.value.payload(), ensure_ascii=False).encode()  # renderable as UTF-8


def test_attribute_values_within_awss_rule_are_kept() -> None:
    value = "a-Z_0.9,@/:#=[]" + "x" * 785
    thing = run(attributed(value), {"Serial": "SN1"}).thing
    assert thing is not None and thing.attributes == {"serial": value}
    empty = run(attributed(""), {"Serial": "SN1"}).thing
    assert empty is not None and empty.attributes == {"serial": ""}


@pytest.mark.parametrize("name", ["has space", "x" * 129, "eq=", ""])
def test_attribute_names_outside_awss_rule_are_refused(name: str) -> None:
    with pytest.raises(TemplateError, match="^AttributePayload.Attributes: "):
        run(attributed("v", name), {"Serial": "SN1"})


@pytest.mark.parametrize(
    ("prop", "value", "field"),
    [
        ("ThingTypeName", "type one", "ThingTypeName"),
        ("ThingTypeName", "t" * 129, "ThingTypeName"),
        ("ThingGroups", ["ok", "bad/group"], "ThingGroups[1]"),
        ("ThingGroups", ["g" * 129], "ThingGroups[0]"),
        ("BillingGroup", "bill\n", "BillingGroup"),
    ],
)
def test_group_and_type_names_outside_awss_rule_are_refused(prop: str, value: Any, field: str) -> None:
    body = thing_template("dev-1")
    body["Resources"]["thing"]["Properties"][prop] = value
    with pytest.raises(TemplateError, match=f"^{re.escape(field)}: "):
        run(body, {"Serial": "SN1"})


def test_names_at_awss_limits_are_accepted() -> None:
    body = thing_template("n" * 128)
    body["Resources"]["thing"]["Properties"].update(
        {"ThingTypeName": "t:" + "t" * 126, "ThingGroups": ["g_-:" + "g" * 124]}
    )
    body["Resources"]["pol"] = {
        "Type": "AWS::IoT::Policy",
        "Properties": {"PolicyName": "p+=,.@-_" + "p" * 120},
    }
    evaluation = run(body, {"Serial": "SN1"})
    assert evaluation.thing is not None and evaluation.thing.thing_name == "n" * 128
    with pytest.raises(TemplateError, match="^PolicyName: is 129 characters"):
        run(policy({"PolicyName": "p" * 129}))
