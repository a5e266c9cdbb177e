"""Policies of certificates: ListAttachedPolicies, AttachPolicy, DetachPolicy, GetPolicy,
ListPolicies. Policies themselves come from provisioning templates (by name or inline); the
emulator keeps their documents and never evaluates them.
"""

from __future__ import annotations

from typing import Any

from emulator.control.account import DEFAULT_PAGE_SIZE, Account
from emulator.control.arns import certificate_of
from emulator.control.inputs import MARKER, POLICY_NAME, Call, encode_token, page
from emulator.errors import ResourceNotFound


def list_attached_policies(account: Account, call: Call) -> dict[str, Any]:
    """`recursive` (thing groups) is accepted and moot: certificates have no parents."""
    certificate_id = certificate_of(call.labels["target"], "target")
    call.query_bool("recursive")
    limit = call.page_size("pageSize", DEFAULT_PAGE_SIZE)
    after = call.token("marker", MARKER)
    if account.registry.certificate_status(certificate_id) is None:
        raise ResourceNotFound(f"Certificate {certificate_id} does not exist")
    names, next_key = page(
        account.registry.pages.certificate_policies(certificate_id), lambda n: n, after, limit
    )
    return _policies(account, call, names, next_key)


def attach_policy(account: Account, call: Call) -> None:
    name = call.label("policyName", POLICY_NAME)
    account.registry.lifecycle.attach_policy(name, certificate_of(call.body_text("target"), "target"))


def detach_policy(account: Account, call: Call) -> None:
    name = call.label("policyName", POLICY_NAME)
    account.registry.lifecycle.detach_policy(name, certificate_of(call.body_text("target"), "target"))


def get_policy(account: Account, call: Call) -> dict[str, Any]:
    name = call.label("policyName", POLICY_NAME)
    policy = account.registry.pages.policy_record(name)
    if policy is None:
        raise ResourceNotFound(f"Policy {name} does not exist")
    return {
        "policyName": name,
        "policyArn": account.arn(call, "policy", name),
        "policyDocument": policy["policyDocument"],
        "defaultVersionId": "1",
        "creationDate": policy["createdAt"],
        "lastModifiedDate": policy["createdAt"],
        "generationId": "1",
    }


def list_policies(account: Account, call: Call) -> dict[str, Any]:
    """By name; descending unless isAscendingOrder, as ListCertificates orders by default."""
    limit = call.page_size("pageSize", DEFAULT_PAGE_SIZE)
    descending = not call.query_bool("isAscendingOrder")
    after = call.token("marker", MARKER)
    names = sorted((p["policyName"] for p in account.registry.list_policies()), reverse=descending)
    chosen, next_key = page(names, lambda n: n, after, limit, descending=descending)
    return _policies(account, call, chosen, next_key)


def _policies(account: Account, call: Call, names: list[str], next_key: Any) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "policies": [{"policyName": n, "policyArn": account.arn(call, "policy", n)} for n in names]
    }
    if next_key is not None:
        answer["nextMarker"] = encode_token(next_key)
    return answer
