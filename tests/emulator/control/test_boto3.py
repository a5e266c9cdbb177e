"""boto3 (AWS's SDK, with botocore's own model, signer and paginators) against the emulator's
control plane: the operations a device's lifecycle needs, their paging, and AWS's errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from device_keys import make_csr
from iot_control import REGION, iot_client, provision_device

from emulator import Emulator


def error_of(excinfo: pytest.ExceptionInfo[ClientError]) -> tuple[int, str, str]:
    error = excinfo.value.response
    return error["ResponseMetadata"]["HTTPStatusCode"], error["Error"]["Code"], error["Error"]["Message"]


def test_describe_endpoint_names_the_emulator_over_http_and_https(emulator: Emulator) -> None:
    for tls in (False, True):
        iot = iot_client(emulator, tls=tls)
        assert iot.describe_endpoint(endpointType="iot:Data-ATS")["endpointAddress"] == "127.0.0.1"
        with pytest.raises(ClientError) as excinfo:
            iot.describe_endpoint(endpointType="iot:Nope")
        assert error_of(excinfo)[:2] == (400, "InvalidRequestException")


def test_a_provisioned_device_is_described_as_aws_does(emulator: Emulator, tmp_path: Path) -> None:
    device = provision_device(emulator, tmp_path, "B3-1")
    iot = iot_client(emulator)

    thing = iot.describe_thing(thingName=device.thing_name)
    assert thing["thingName"] == thing["defaultClientId"] == "demo-B3-1"
    assert thing["thingArn"] == f"arn:aws:iot:{REGION}:000000000000:thing/demo-B3-1"
    assert thing["attributes"] == {"serial": "B3-1", "location": "factory"}
    assert thing["version"] == 1 and len(thing["thingId"]) == 36

    description = iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"]
    assert description["certificateArn"] == device.certificate_arn
    assert description["status"] == "ACTIVE"
    assert description["certificatePem"] == device.cert_path.read_text()
    assert description["ownedBy"] == "000000000000"
    assert description["validity"]["notAfter"].year == 2049
    assert description["creationDate"] <= description["lastModifiedDate"]

    assert iot.list_thing_principals(thingName="demo-B3-1")["principals"] == [device.certificate_arn]
    assert iot.list_thing_principals_v2(thingName="demo-B3-1")["thingPrincipalObjects"] == [
        {"principal": device.certificate_arn, "thingPrincipalType": "NON_EXCLUSIVE_THING"}
    ]
    assert iot.list_principal_things(principal=device.certificate_arn)["things"] == ["demo-B3-1"]
    assert iot.list_principal_things_v2(principal=device.certificate_arn)["principalThingObjects"] == [
        {"thingName": "demo-B3-1", "thingPrincipalType": "NON_EXCLUSIVE_THING"}
    ]
    policies = iot.list_attached_policies(target=device.certificate_arn)["policies"]
    assert [p["policyName"] for p in policies] == [p["policyName"] for p in iot.list_policies()["policies"]]
    assert len(policies) == 1 and policies[0]["policyArn"].endswith(":policy/" + policies[0]["policyName"])
    assert "iot:Connect" in iot.get_policy(policyName=policies[0]["policyName"])["policyDocument"]


def test_listings_page_with_botocore_paginators(emulator: Emulator, tmp_path: Path) -> None:
    devices = [provision_device(emulator, tmp_path, f"PG-{n}") for n in range(5)]
    iot = iot_client(emulator)

    pages = list(iot.get_paginator("list_things").paginate(PaginationConfig={"PageSize": 2}))
    assert [len(page["things"]) for page in pages] == [2, 2, 1]
    assert [t["thingName"] for page in pages for t in page["things"]] == [f"demo-PG-{n}" for n in range(5)]
    only = iot.list_things(attributeName="serial", attributeValue="PG-3")["things"]
    assert [t["thingName"] for t in only] == ["demo-PG-3"]
    prefixed = iot.list_things(attributeName="serial", attributeValue="PG-", usePrefixAttributeValue=True)
    assert len(prefixed["things"]) == 5

    # Newest first by default, oldest first when asked; the claim certificate is the oldest.
    paginator = iot.get_paginator("list_certificates")
    newest_first = [
        c["certificateId"]
        for p in paginator.paginate(PaginationConfig={"PageSize": 2})
        for c in p["certificates"]
    ]
    assert newest_first[:5] == [d.certificate_id for d in reversed(devices)]
    oldest_first = [
        c["certificateId"]
        for p in paginator.paginate(ascendingOrder=True, PaginationConfig={"PageSize": 4})
        for c in p["certificates"]
    ]
    assert oldest_first == list(reversed(newest_first)) and len(oldest_first) == 6

    # AWS's ListCertificates has no status filter; callers filter the pages (JMESPath here).
    iot.update_certificate(certificateId=devices[1].certificate_id, newStatus="INACTIVE")
    inactive = list(paginator.paginate().search("certificates[?status=='INACTIVE'].certificateId"))
    assert inactive == [devices[1].certificate_id]


def test_update_certificate_follows_aws_rules(emulator: Emulator, tmp_path: Path) -> None:
    device = provision_device(emulator, tmp_path, "UC-1")
    iot = iot_client(emulator)

    def status() -> str:
        return iot.describe_certificate(certificateId=device.certificate_id)["certificateDescription"][
            "status"
        ]

    iot.update_certificate(certificateId=device.certificate_id, newStatus="INACTIVE")
    assert status() == "INACTIVE"
    iot.update_certificate(certificateId=device.certificate_id, newStatus="ACTIVE")  # suspend is reversible
    iot.update_certificate(certificateId=device.certificate_id, newStatus="ACTIVE")  # idempotent
    assert status() == "ACTIVE"
    for refused in ("PENDING_ACTIVATION", "PENDING_TRANSFER", "REGISTER_INACTIVE"):
        with pytest.raises(ClientError) as excinfo:
            iot.update_certificate(certificateId=device.certificate_id, newStatus=refused)
        assert error_of(excinfo)[:2] == (400, "InvalidRequestException")
    iot.update_certificate(certificateId=device.certificate_id, newStatus="REVOKED")
    iot.update_certificate(certificateId=device.certificate_id, newStatus="REVOKED")  # idempotent
    for later in ("ACTIVE", "INACTIVE"):
        with pytest.raises(iot.exceptions.CertificateStateException) as state:
            iot.update_certificate(certificateId=device.certificate_id, newStatus=later)
        assert error_of(state)[:2] == (406, "CertificateStateException")
    assert status() == "REVOKED"
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.update_certificate(certificateId="0" * 64, newStatus="INACTIVE")


def test_decommission_deletes_only_what_is_inactive_and_detached(emulator: Emulator, tmp_path: Path) -> None:
    device = provision_device(emulator, tmp_path, "DC-1")
    iot = iot_client(emulator)
    cert_id, arn, thing = device.certificate_id, device.certificate_arn, device.thing_name

    with pytest.raises(iot.exceptions.CertificateStateException) as active:
        iot.delete_certificate(certificateId=cert_id, forceDelete=True)
    assert "must be deactivated" in error_of(active)[2]
    with pytest.raises(iot.exceptions.InvalidRequestException) as attached_thing:
        iot.delete_thing(thingName=thing)
    assert (
        error_of(attached_thing)[2]
        == f"Cannot delete. Thing {thing} is still attached to one or more principals"
    )

    iot.update_certificate(certificateId=cert_id, newStatus="INACTIVE")
    with pytest.raises(iot.exceptions.DeleteConflictException) as still_attached:
        iot.delete_certificate(certificateId=cert_id, forceDelete=True)  # force lifts policies only
    assert error_of(still_attached)[0] == 409 and thing in error_of(still_attached)[2]

    iot.detach_thing_principal(thingName=thing, principal=arn)
    assert iot.list_thing_principals(thingName=thing)["principals"] == []
    with pytest.raises(iot.exceptions.DeleteConflictException) as policies:
        iot.delete_certificate(certificateId=cert_id)
    assert "policies" in error_of(policies)[2]
    policy = iot.list_attached_policies(target=arn)["policies"][0]["policyName"]
    iot.detach_policy(policyName=policy, target=arn)
    iot.detach_policy(policyName=policy, target=arn)  # nothing attached: no error
    assert iot.list_attached_policies(target=arn)["policies"] == []
    iot.attach_policy(policyName=policy, target=arn)
    iot.delete_certificate(certificateId=cert_id, forceDelete=True)  # the policy goes with it

    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_certificate(certificateId=cert_id)
    with pytest.raises(iot.exceptions.VersionConflictException):
        iot.delete_thing(thingName=thing, expectedVersion=7)
    iot.delete_thing(thingName=thing, expectedVersion=1)
    iot.delete_thing(thingName=thing)  # gone already: AWS answers success
    with pytest.raises(iot.exceptions.ResourceNotFoundException):
        iot.describe_thing(thingName=thing)
    assert [p["policyName"] for p in iot.list_policies()["policies"]] == [policy]


def test_rotation_path_a_new_certificate_from_a_csr_for_the_same_thing(
    emulator: Emulator, tmp_path: Path
) -> None:
    device = provision_device(emulator, tmp_path, "RT-1")
    iot = iot_client(emulator, tls=True)
    _, csr_pem = make_csr("RT-1")
    created = iot.create_certificate_from_csr(certificateSigningRequest=csr_pem, setAsActive=True)
    assert created["certificatePem"].startswith("-----BEGIN CERTIFICATE-----")
    iot.attach_thing_principal(thingName=device.thing_name, principal=created["certificateArn"])
    principals = iot.list_thing_principals(thingName=device.thing_name)["principals"]
    assert sorted(principals) == sorted([device.certificate_arn, created["certificateArn"]])
    description = iot.describe_certificate(certificateId=created["certificateId"])["certificateDescription"]
    assert description["status"] == "ACTIVE"

    inactive = iot.create_certificate_from_csr(certificateSigningRequest=make_csr()[1])
    status = iot.describe_certificate(certificateId=inactive["certificateId"])["certificateDescription"][
        "status"
    ]
    assert status == "INACTIVE"
    with pytest.raises(iot.exceptions.InvalidRequestException) as bad_csr:
        iot.create_certificate_from_csr(certificateSigningRequest="not a CSR")
    assert "CSR" in error_of(bad_csr)[2] or "certificate signing request" in error_of(bad_csr)[2].lower()


def test_exclusive_attachment_keeps_a_certificate_to_one_thing(emulator: Emulator, tmp_path: Path) -> None:
    first = provision_device(emulator, tmp_path, "EX-1")
    second = provision_device(emulator, tmp_path, "EX-2")
    iot = iot_client(emulator)
    with pytest.raises(iot.exceptions.InvalidRequestException):
        iot.attach_thing_principal(
            thingName=second.thing_name, principal=first.certificate_arn, thingPrincipalType="EXCLUSIVE_THING"
        )
    iot.detach_thing_principal(thingName=second.thing_name, principal=second.certificate_arn)
    iot.attach_thing_principal(
        thingName=second.thing_name, principal=second.certificate_arn, thingPrincipalType="EXCLUSIVE_THING"
    )
    with pytest.raises(iot.exceptions.InvalidRequestException) as exclusive:
        iot.attach_thing_principal(thingName=first.thing_name, principal=second.certificate_arn)
    assert "exclusively" in error_of(exclusive)[2]
    objects = iot.list_principal_things_v2(principal=second.certificate_arn)["principalThingObjects"]
    assert objects == [{"thingName": second.thing_name, "thingPrincipalType": "EXCLUSIVE_THING"}]


def test_unknown_resources_are_not_found(emulator: Emulator) -> None:
    iot = iot_client(emulator)
    missing_arn = f"arn:aws:iot:{REGION}:000000000000:cert/{'ab' * 32}"
    for call in (
        lambda: iot.describe_thing(thingName="nobody"),
        lambda: iot.list_thing_principals(thingName="nobody"),
        lambda: iot.describe_certificate(certificateId="ab" * 32),
        lambda: iot.delete_certificate(certificateId="ab" * 32),
        lambda: iot.list_principal_things(principal=missing_arn),
        lambda: iot.list_attached_policies(target=missing_arn),
        lambda: iot.get_policy(policyName="nothing"),
    ):
        with pytest.raises(iot.exceptions.ResourceNotFoundException) as excinfo:
            call()
        assert error_of(excinfo)[0] == 404
    with pytest.raises(iot.exceptions.InvalidRequestException) as not_a_certificate:
        iot.list_principal_things(principal="arn:aws:iam::000000000000:user/alice")
    assert "not a certificate ARN" in error_of(not_a_certificate)[2]


def test_wrong_credentials_are_refused_as_aws_refuses_them(emulator: Emulator) -> None:
    with pytest.raises(ClientError) as wrong_secret:
        iot_client(emulator, secret="not-the-secret").list_things()
    status, code, message = error_of(wrong_secret)
    assert (status, code) == (403, "InvalidSignatureException")
    assert message.startswith("The request signature we calculated does not match")
    with pytest.raises(ClientError) as unknown_key:
        iot_client(emulator, key_id="AKIDUNKNOWN").list_things()
    assert error_of(unknown_key)[:2] == (403, "UnrecognizedClientException")
