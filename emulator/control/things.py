"""Things and their principals: DescribeEndpoint, DescribeThing, ListThings, DeleteThing,
ListThingPrincipals(V2), ListPrincipalThings(V2), AttachThingPrincipal, DetachThingPrincipal.

Shapes as botocore's model of AWS IoT gives them; absent optional members are left out, as AWS
leaves them out.
"""

from __future__ import annotations

from typing import Any

from emulator.control.account import DEFAULT_PAGE_SIZE, Account
from emulator.control.arns import certificate_of
from emulator.control.inputs import (
    ATTRIBUTE_NAME,
    ATTRIBUTE_VALUE,
    ENDPOINT_TYPE,
    THING_NAME,
    THING_TYPE_NAME,
    Call,
    encode_token,
    page,
)
from emulator.errors import InvalidControlRequest, ResourceNotFound
from emulator.registry.lifecycle import PRINCIPAL_TYPES

# DescribeEndpoint's endpointType values (its documentation lists them).
ENDPOINT_TYPES = ("iot:Data", "iot:Data-ATS", "iot:CredentialProvider", "iot:Jobs")


def describe_endpoint(account: Account, call: Call) -> dict[str, Any]:
    """Every endpoint type is the emulator itself: its listeners share one host."""
    endpoint_type = call.query_text("endpointType", ENDPOINT_TYPE)
    if endpoint_type is not None and endpoint_type not in ENDPOINT_TYPES:
        raise InvalidControlRequest(
            f"endpointType {endpoint_type!r} is not one of {', '.join(ENDPOINT_TYPES)}"
        )
    return {"endpointAddress": account.config.endpoint_address or account.config.host}


def describe_thing(account: Account, call: Call) -> dict[str, Any]:
    name = call.label("thingName", THING_NAME)
    thing = account.registry.pages.thing_record(name)
    if thing is None:
        raise ResourceNotFound(f"Thing {name} does not exist")
    return _present(
        {
            "defaultClientId": name,
            "thingName": name,
            "thingId": thing["thingId"],
            "thingArn": account.arn(call, "thing", name),
            "thingTypeName": thing["thingTypeName"],
            "attributes": thing["attributes"],
            "version": thing["version"],
            "billingGroupName": thing["billingGroupName"],
        }
    )


def list_things(account: Account, call: Call) -> dict[str, Any]:
    limit = call.page_size("maxResults", DEFAULT_PAGE_SIZE)
    after = call.token("nextToken")
    attribute_name = call.query_text("attributeName", ATTRIBUTE_NAME)
    attribute_value = call.query_text("attributeValue", ATTRIBUTE_VALUE)
    prefix = bool(call.query_bool("usePrefixAttributeValue"))
    if attribute_value is not None and not attribute_name:
        raise InvalidControlRequest("attributeValue needs attributeName")
    if not isinstance(after, str | None):
        raise InvalidControlRequest("nextToken is not a token this API returned")
    things = account.registry.pages.things_page(
        after,
        limit + 1,
        attribute_name=attribute_name or None,
        attribute_value=attribute_value,
        prefix=prefix,
        thing_type_name=call.query_text("thingTypeName", THING_TYPE_NAME),
    )
    answer: dict[str, Any] = {
        "things": [
            _present(
                {
                    "thingName": thing["thingName"],
                    "thingTypeName": thing["thingTypeName"],
                    "thingArn": account.arn(call, "thing", thing["thingName"]),
                    "attributes": thing["attributes"],
                    "version": thing["version"],
                }
            )
            for thing in things[:limit]
        ]
    }
    if len(things) > limit:
        answer["nextToken"] = encode_token(things[limit - 1]["thingName"])
    return answer


def delete_thing(account: Account, call: Call) -> dict[str, Any]:
    name = call.label("thingName", THING_NAME)
    expected = call.query_int("expectedVersion", -(2**63), 2**63 - 1)
    account.registry.lifecycle.delete_thing(name, expected)
    return {}


def list_thing_principals(account: Account, call: Call) -> dict[str, Any]:
    principals, next_key = _thing_principals(account, call)
    answer: dict[str, Any] = {
        "principals": [account.arn(call, "cert", certificate_id) for certificate_id, _ in principals]
    }
    return _with_token(answer, "nextToken", next_key)


def list_thing_principals_v2(account: Account, call: Call) -> dict[str, Any]:
    principals, next_key = _thing_principals(
        account, call, call.query_enum("thingPrincipalType", PRINCIPAL_TYPES)
    )
    answer: dict[str, Any] = {
        "thingPrincipalObjects": [
            {"principal": account.arn(call, "cert", certificate_id), "thingPrincipalType": kind}
            for certificate_id, kind in principals
        ]
    }
    return _with_token(answer, "nextToken", next_key)


def list_principal_things(account: Account, call: Call) -> dict[str, Any]:
    things, next_key = _principal_things(account, call)
    return _with_token({"things": [name for name, _ in things]}, "nextToken", next_key)


def list_principal_things_v2(account: Account, call: Call) -> dict[str, Any]:
    things, next_key = _principal_things(
        account, call, call.query_enum("thingPrincipalType", PRINCIPAL_TYPES)
    )
    answer: dict[str, Any] = {
        "principalThingObjects": [{"thingName": name, "thingPrincipalType": kind} for name, kind in things]
    }
    return _with_token(answer, "nextToken", next_key)


def attach_thing_principal(account: Account, call: Call) -> dict[str, Any]:
    name = call.label("thingName", THING_NAME)
    certificate_id = certificate_of(call.header("x-amzn-principal", "principal"))
    kind = call.query_enum("thingPrincipalType", PRINCIPAL_TYPES) or "NON_EXCLUSIVE_THING"
    account.registry.lifecycle.attach_thing_principal(name, certificate_id, kind)
    return {}


def detach_thing_principal(account: Account, call: Call) -> dict[str, Any]:
    name = call.label("thingName", THING_NAME)
    certificate_id = certificate_of(call.header("x-amzn-principal", "principal"))
    account.registry.lifecycle.detach_thing_principal(name, certificate_id)
    return {}


def _thing_principals(
    account: Account, call: Call, kind: str | None = None
) -> tuple[list[tuple[str, str]], Any]:
    name = call.label("thingName", THING_NAME)
    limit = call.page_size("maxResults", DEFAULT_PAGE_SIZE)
    after = call.token("nextToken")
    if account.registry.pages.thing_record(name) is None:
        raise ResourceNotFound(f"Thing {name} does not exist")
    principals = [p for p in account.registry.pages.thing_principals(name) if kind is None or p[1] == kind]
    return page(principals, lambda p: p[0], after, limit)


def _principal_things(
    account: Account, call: Call, kind: str | None = None
) -> tuple[list[tuple[str, str]], Any]:
    certificate_id = certificate_of(call.header("x-amzn-principal", "principal"))
    limit = call.page_size("maxResults", DEFAULT_PAGE_SIZE)
    after = call.token("nextToken")
    if account.registry.certificate_status(certificate_id) is None:
        raise ResourceNotFound(f"Certificate {certificate_id} does not exist")
    things = [
        t for t in account.registry.pages.principal_things(certificate_id) if kind is None or t[1] == kind
    ]
    return page(things, lambda t: t[0], after, limit)


def _with_token(answer: dict[str, Any], name: str, next_key: Any) -> dict[str, Any]:
    if next_key is not None:
        answer[name] = encode_token(next_key)
    return answer


def _present(record: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in record.items() if value is not None}
