"""Fleet provisioning's operations, one table: request topic -> operation -> handler -> label.

Copies AWS IoT fleet provisioning's MQTT API: requests on `$aws/certificates/create/<fmt>`,
`$aws/certificates/create-from-csr/<fmt>` and `$aws/provisioning-templates/<name>/provision/<fmt>`
(`<fmt>` json or cbor). An operation's name is also its handler's (`FleetProvisioning.<name>`)
and what faults are set on (`emulator.fleet.faults`); its label is AWS's name, in the log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Operation:
    name: str  # create_keys_and_certificate: the handler's name, and the faults'
    label: str  # CreateKeysAndCertificate: AWS's
    topic: re.Pattern[str]  # the request topic: its format, and for RegisterThing the template


@dataclass(frozen=True)
class Request:
    """A publish on one of the operations' topics."""

    operation: Operation
    format: str  # json or cbor
    template_name: str | None  # RegisterThing's

    @property
    def label(self) -> str:
        return self.operation.label + (f" {self.template_name}" if self.template_name else "")


OPERATIONS = (
    Operation(
        "create_keys_and_certificate",
        "CreateKeysAndCertificate",
        re.compile(r"^\$aws/certificates/create/(?P<format>json|cbor)$"),
    ),
    Operation(
        "create_certificate_from_csr",
        "CreateCertificateFromCsr",
        re.compile(r"^\$aws/certificates/create-from-csr/(?P<format>json|cbor)$"),
    ),
    Operation(
        "register_thing",
        "RegisterThing",
        re.compile(r"^\$aws/provisioning-templates/(?P<template>[^/]+)/provision/(?P<format>json|cbor)$"),
    ),
)
NAMES = tuple(operation.name for operation in OPERATIONS)


def match(topic: str) -> Request | None:
    """The operation a request topic asks for, or None for any other topic."""
    for operation in OPERATIONS:
        if found := operation.topic.match(topic):
            return Request(operation, found["format"], found.groupdict().get("template"))
    return None
