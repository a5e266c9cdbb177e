"""The fleet-provisioning flow: create a certificate, check it is ours, register the thing.

Living within AWS's limits: a throttled Create* or RegisterThing is sent again after a jittered
exponential backoff while the request's deadline leaves room for it, and only then answered 429
with Retry-After. The link is given back during the backoff (a rejection leaves it in step), and
the retry takes any link: RegisterThing goes again with the same ownership token (valid for an
hour); a throttled Create* minted nothing, so sending it again mints one certificate at most.
With PROVISIONER_AWS_MAX_RATE every attempt first takes a slot of the pace (provisioning.pace).

Interface used by the provision use case (service.provisioning.use_case):
    provisioner.provision(template_name=..., parameters=..., csr=..., request_id=...) -> Outcome
        raises service.errors.ServiceError subclasses (never anything else on purpose)
    provisioner.readiness() -> dict  {"ready": bool, "connections": [...], ...}
    provisioner.unsent               where certificates that reached no caller are reported
                                     (service.provisioning.unsent), or None
    provisioner.close()              finish in-flight flows, then disconnect (graceful shutdown)
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from service import logs, metrics
from service.config import Settings
from service.errors import PaceExceeded, ProvisioningRejected, ServiceError, Throttled
from service.mqtt.correlation import Answer
from service.mqtt.link import MqttLink
from service.mqtt.pool import ConnectionPool
from service.mqtt.sigv4 import AwsCredentials, credentials_from_botocore, static_credentials
from service.provisioning.answers import checked_certificate, registered_thing, rejection
from service.provisioning.pace import Pace
from service.provisioning.request import Outcome
from service.provisioning.topics import (
    CERTIFICATE_ANSWER_TOPICS,
    answer_topics,
    create_from_csr_topic,
    create_topic,
    template_answer_filters,
    template_topic,
)
from service.provisioning.unsent import UnsentCertificate, UnsentCertificates, reason_for

log = logging.getLogger("service.provisioner")

# Time kept back from the request's deadline for the attempt after a backoff or a pace wait (two
# round trips to AWS and the pool wait): a retry that cannot finish in time is not started.
RESERVE_SECONDS = 1.0


@dataclass
class _Progress:
    """What a provision has got from AWS so far: a retry goes on from here."""

    created: dict[str, Any] | None = None
    certificate_pem: str = ""
    private_key: str | None = None
    throttles: int = 0


class Provisioner:
    def __init__(
        self,
        settings: Settings,
        credentials: Callable[[], AwsCredentials] | None = None,
        *,
        pace: Pace | None = None,
        unsent: UnsentCertificates | None = None,
    ) -> None:
        self.settings = settings
        self.pace = pace
        # A certificate Create* made for a flow that then failed reached nobody: reported there.
        self.unsent = unsent
        if credentials is None and settings.auth_mode == "sigv4":
            if settings.static_credentials:  # local mode: the emulator's test pair
                credentials = static_credentials(*settings.static_credentials)
            else:
                credentials = credentials_from_botocore(settings.aws_profile)
        self.pool = ConnectionPool(settings, credentials, base_filters=CERTIFICATE_ANSWER_TOPICS)

    def provision(
        self, *, template_name: str, parameters: dict[str, str], csr: str | None, request_id: str
    ) -> Outcome:
        started = time.monotonic()
        deadline = started + self.settings.request_timeout_seconds
        # Room for the last attempt: at most a quarter of a short deadline.
        last_start = deadline - min(RESERVE_SECONDS, self.settings.request_timeout_seconds / 4)
        progress = _Progress()
        earliest = started
        try:
            while True:
                self._wait_turn(earliest, last_start)
                try:
                    registered = self._attempt(progress, template_name, parameters, csr, deadline)
                    break
                except Throttled as throttled:
                    progress.throttles += 1
                    earliest = time.monotonic() + self._backoff(progress.throttles)
                    step = throttled.step or "create"
                    if earliest > last_start:
                        metrics.throttled_requests.labels(step).inc()
                        throttled.retry_after = max(1, math.ceil(earliest - time.monotonic()))
                        raise
                    metrics.throttle_retries.labels(step).inc()
                    log.info(
                        "request %s: AWS IoT throttled %s (%d); retrying in %.0f ms",
                        request_id,
                        step,
                        progress.throttles,
                        (earliest - time.monotonic()) * 1000,
                    )
        except ServiceError as exc:
            logs.bind(step=exc.step)
            log.info(
                "request %s: %s failed after %.0f ms: %s",
                request_id,
                exc.step or "flow",
                (time.monotonic() - started) * 1000,
                exc.detail,
            )
            self._report_unsent(progress, exc, template_name, request_id)
            raise
        except BaseException as exc:
            self._report_unsent(progress, exc, template_name, request_id)
            raise
        created = progress.created
        assert created is not None
        thing_name, configuration = registered_thing(registered)
        log.info(
            "request %s: provisioned thing %r, certificate %s... in %.0f ms (%s)",
            request_id,
            thing_name,
            created["certificateId"][:12],
            (time.monotonic() - started) * 1000,
            "csr" if csr else "server key",
        )
        return Outcome(
            thing_name=thing_name,
            certificate_id=created["certificateId"],
            certificate_pem=progress.certificate_pem,
            private_key=progress.private_key,
            device_configuration=configuration,
        )

    def _attempt(
        self,
        progress: _Progress,
        template_name: str,
        parameters: dict[str, str],
        csr: str | None,
        deadline: float,
    ) -> dict[str, Any]:
        """One flow on one link, from where `progress` stands; returns RegisterThing's answer."""
        with self.pool.connection(deadline=deadline) as link:

            def step_deadline() -> float:
                return min(deadline, time.monotonic() + self.settings.step_timeout_seconds)

            # JSON or CBOR: the link alternates them between flows (docs/correlation.md).
            fmt = link.flow_format or "json"
            answer_filters = template_answer_filters(template_name)
            if progress.created is None:
                # On a link's first flow of this template, its SUBSCRIBE travels beside the create
                # request; the SUBACK is awaited before RegisterThing is published.
                link.subscribe_ahead(answer_filters)
                request_topic, request = (
                    (create_from_csr_topic(fmt), {"certificateSigningRequest": csr})
                    if csr is not None
                    else (create_topic(fmt), {})
                )
                created = _call(link, request_topic, request, step="create", deadline=step_deadline())
                progress.certificate_pem, progress.private_key = checked_certificate(created, csr)
                progress.created = created
            register_topic = template_topic(template_name, fmt)
            link.ensure_subscribed(
                answer_filters,
                what=f"template '{template_name}'",
                deadline=step_deadline(),
            )
            return _call(
                link,
                register_topic,
                {
                    "certificateOwnershipToken": progress.created["certificateOwnershipToken"],
                    "parameters": parameters,
                },
                step="register",
                deadline=step_deadline(),
            )

    def _report_unsent(
        self, progress: _Progress, error: BaseException, template_name: str, request_id: str
    ) -> None:
        """AWS made a certificate for this flow and nobody gets it: say so (docs/lifecycle.md)."""
        created = progress.created
        if created is None or self.unsent is None:
            return
        self.unsent.record(
            UnsentCertificate(
                certificate_id=created["certificateId"],
                reason=reason_for(error),
                request_id=request_id,
                template=template_name,
            )
        )

    def _backoff(self, throttles: int) -> float:
        """Exponential in the number of throttles so far, half of it random ("equal jitter"), so
        callers throttled together spread out while the wait still grows."""
        s = self.settings
        ceiling: float = min(
            s.throttle_retry_max_seconds, s.throttle_retry_base_seconds * 2 ** (throttles - 1)
        )
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _wait_turn(self, earliest: float, latest: float) -> None:
        """Sleep until `earliest` (time.monotonic) or, with a pace, until this attempt's slot;
        PaceExceeded (429) when the pace has no slot before `latest`."""
        if self.pace is None:
            time.sleep(max(0.0, earliest - time.monotonic()))
            return
        offset = time.time() - time.monotonic()  # the pace's slots are wall-clock times
        granted, slot = self.pace.reserve(earliest + offset, latest + offset)
        now = time.monotonic()
        if not granted:
            metrics.rate_limit_refusals.labels("aws-pace").inc()
            retry_after = max(1, math.ceil(slot - offset - now))
            raise PaceExceeded(
                f"the service's pace of {self.settings.aws_max_rate:g} provisions a second "
                f"(PROVISIONER_AWS_MAX_RATE) has no free slot before this request's deadline; "
                f"retry in {retry_after} s",
                retry_after=retry_after,
            )
        wait = max(0.0, slot - offset - now)
        metrics.pace_wait.observe(wait)
        time.sleep(wait)

    def readiness(self) -> dict[str, Any]:
        return self.pool.readiness()

    def close(self, drain_seconds: float = 0.0) -> None:
        self.pool.close(drain_seconds=drain_seconds)
        if self.unsent is not None:
            self.unsent.close()


def _call(link: MqttLink, topic: str, body: dict[str, Any], *, step: str, deadline: float) -> dict[str, Any]:
    """One request and its answer, timed; an accepted answer's body, else the rejection."""
    started, result = time.monotonic(), "error"
    try:
        answer = link.call(topic, body, answers=answer_topics(topic), step=step, deadline=deadline)
        result = answer.outcome
        return _accepted(answer, step=step)
    finally:
        metrics.mqtt_step_duration.labels(step, result).observe(time.monotonic() - started)


def _accepted(answer: Answer, *, step: str) -> dict[str, Any]:
    if answer.outcome == "accepted":
        return answer.body
    error: ProvisioningRejected = rejection(step, answer.body)
    metrics.aws_rejections.labels(step, metrics.error_code_label(error.error_code)).inc()
    raise error
