"""The fleet-provisioning flow: create a certificate, check it is ours, register the thing.

Interface used by the HTTP layer:
    provisioner.provision(template_name=..., parameters=..., csr=..., request_id=...) -> ProvisionResult
        raises service.errors.ServiceError subclasses (never anything else on purpose)
    provisioner.readiness() -> dict  {"ready": bool, "connections": [...], ...}
    provisioner.close()              finish in-flight flows, then disconnect (graceful shutdown)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from service.config import Settings
from service.errors import ServiceError
from service.mqtt.link import Answer
from service.mqtt.pool import ConnectionPool
from service.mqtt.sigv4 import AwsCredentials, credentials_from_botocore, static_credentials
from service.provisioning.answers import checked_certificate, registered_thing, rejection
from service.provisioning.topics import (
    CERTIFICATE_ANSWER_TOPICS,
    answer_topics,
    create_from_csr_topic,
    create_topic,
    template_answer_filters,
    template_topic,
)

log = logging.getLogger("service.provisioner")


@dataclass(frozen=True)
class ProvisionResult:
    thing_name: str
    certificate_id: str
    certificate_pem: str
    private_key: str | None
    device_configuration: dict[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print the key
        return f"ProvisionResult(thing_name={self.thing_name!r}, certificate_id={self.certificate_id!r})"


class Provisioner:
    def __init__(self, settings: Settings, credentials: Callable[[], AwsCredentials] | None = None) -> None:
        self.settings = settings
        if credentials is None and settings.auth_mode == "sigv4":
            if settings.static_credentials:  # local mode: the emulator's test pair
                credentials = static_credentials(*settings.static_credentials)
            else:
                credentials = credentials_from_botocore(settings.aws_profile)
        self.pool = ConnectionPool(settings, credentials, base_filters=CERTIFICATE_ANSWER_TOPICS)

    def provision(
        self, *, template_name: str, parameters: dict[str, str], csr: str | None, request_id: str
    ) -> ProvisionResult:
        started = time.monotonic()
        deadline = started + self.settings.request_timeout_seconds
        try:
            with self.pool.connection(deadline=deadline) as link:

                def step_deadline() -> float:
                    return min(deadline, time.monotonic() + self.settings.step_timeout_seconds)

                # JSON or CBOR: the link alternates them between flows (docs/correlation.md).
                fmt = link.flow_format or "json"
                request_topic, request = (
                    (create_from_csr_topic(fmt), {"certificateSigningRequest": csr})
                    if csr is not None
                    else (create_topic(fmt), {})
                )
                created = _accepted(
                    link.call(
                        request_topic,
                        request,
                        answers=answer_topics(request_topic),
                        step="create",
                        deadline=step_deadline(),
                    ),
                    step="create",
                )
                certificate_pem, private_key = checked_certificate(created, csr)
                register_topic = template_topic(template_name, fmt)
                link.ensure_subscribed(
                    template_answer_filters(template_name),
                    what=f"template '{template_name}'",
                    deadline=step_deadline(),
                )
                registered = _accepted(
                    link.call(
                        register_topic,
                        {
                            "certificateOwnershipToken": created["certificateOwnershipToken"],
                            "parameters": parameters,
                        },
                        answers=answer_topics(register_topic),
                        step="register",
                        deadline=step_deadline(),
                    ),
                    step="register",
                )
        except ServiceError as exc:
            log.info(
                "request %s: %s failed after %.0f ms: %s",
                request_id,
                exc.step or "flow",
                (time.monotonic() - started) * 1000,
                exc.detail,
            )
            raise
        thing_name, configuration = registered_thing(registered)
        log.info(
            "request %s: provisioned thing %r, certificate %s... in %.0f ms (%s)",
            request_id,
            thing_name,
            created["certificateId"][:12],
            (time.monotonic() - started) * 1000,
            "csr" if csr else "server key",
        )
        return ProvisionResult(
            thing_name=thing_name,
            certificate_id=created["certificateId"],
            certificate_pem=certificate_pem,
            private_key=private_key,
            device_configuration=configuration,
        )

    def readiness(self) -> dict[str, Any]:
        return self.pool.readiness()

    def close(self, drain_seconds: float = 0.0) -> None:
        self.pool.close(drain_seconds=drain_seconds)


def _accepted(answer: Answer, *, step: str) -> dict[str, Any]:
    if answer.outcome == "accepted":
        return answer.body
    raise rejection(step, answer.body)
