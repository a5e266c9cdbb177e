"""The one route table: method and path (botocore's `requestUri`) -> AWS operation -> handler.

Paths are matched on the raw, still percent-encoded path split at '/', and each label is decoded
after: botocore encodes a label's '/' and ':' (`/attached-policies/arn%3Aaws%3Aiot...%2Fabc`),
so an ARN stays one segment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.control import certificates, policies, things
from emulator.control.account import Account
from emulator.control.inputs import Call, decode_label
from emulator.errors import ControlError

Handler = Callable[[Account, Call], dict[str, Any] | None]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    operation: str
    handler: Handler

    @property
    def segments(self) -> list[str]:
        return self.path.strip("/").split("/")


ROUTES = (
    Route("GET", "/endpoint", "DescribeEndpoint", things.describe_endpoint),
    Route("GET", "/things", "ListThings", things.list_things),
    Route("GET", "/things/{thingName}", "DescribeThing", things.describe_thing),
    Route("DELETE", "/things/{thingName}", "DeleteThing", things.delete_thing),
    Route("GET", "/things/{thingName}/principals", "ListThingPrincipals", things.list_thing_principals),
    Route("PUT", "/things/{thingName}/principals", "AttachThingPrincipal", things.attach_thing_principal),
    Route("DELETE", "/things/{thingName}/principals", "DetachThingPrincipal", things.detach_thing_principal),
    Route(
        "GET", "/things/{thingName}/principals-v2", "ListThingPrincipalsV2", things.list_thing_principals_v2
    ),
    Route("GET", "/principals/things", "ListPrincipalThings", things.list_principal_things),
    Route("GET", "/principals/things-v2", "ListPrincipalThingsV2", things.list_principal_things_v2),
    Route("GET", "/certificates", "ListCertificates", certificates.list_certificates),
    Route("POST", "/certificates", "CreateCertificateFromCsr", certificates.create_certificate_from_csr),
    Route("GET", "/certificates/{certificateId}", "DescribeCertificate", certificates.describe_certificate),
    Route("PUT", "/certificates/{certificateId}", "UpdateCertificate", certificates.update_certificate),
    Route("DELETE", "/certificates/{certificateId}", "DeleteCertificate", certificates.delete_certificate),
    Route("POST", "/attached-policies/{target}", "ListAttachedPolicies", policies.list_attached_policies),
    Route("PUT", "/target-policies/{policyName}", "AttachPolicy", policies.attach_policy),
    Route("POST", "/target-policies/{policyName}", "DetachPolicy", policies.detach_policy),
    Route("GET", "/policies", "ListPolicies", policies.list_policies),
    Route("GET", "/policies/{policyName}", "GetPolicy", policies.get_policy),
)
OPERATIONS = tuple(route.operation for route in ROUTES)


class UnknownOperation(ControlError):
    status = 404
    code = "UnknownOperationException"


def match(method: str, raw_path: str) -> tuple[Route, dict[str, str]]:
    """The route of a request and its decoded labels; UnknownOperation naming what is served."""
    segments = raw_path.strip("/").split("/")
    allowed = []
    for route in ROUTES:
        labels = _labels(route.segments, segments)
        if labels is None:
            continue
        if route.method == method:
            return route, {name: decode_label(value) for name, value in labels.items()}
        allowed.append(f"{route.method} ({route.operation})")
    if allowed:
        raise UnknownOperation(
            f"{method} {raw_path[:200]} is not an operation; this path takes {', '.join(allowed)}"
        )
    raise UnknownOperation(
        f"no emulated AWS IoT operation at {method} {raw_path[:200]}; the emulator serves "
        f"{', '.join(OPERATIONS)}"
    )


def _labels(template: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    labels = {}
    for expected, given in zip(template, segments, strict=True):
        if expected.startswith("{"):
            labels[expected[1:-1]] = given
        elif expected != given:
            return None
    return labels
