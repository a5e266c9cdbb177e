"""AWS IoT fleet provisioning over MQTT: the three operations on their reserved topics.

Copies AWS IoT fleet provisioning's MQTT API: requests on the topics of `emulator.fleet.operations`;
answers on `<request topic>/accepted` or `/rejected`, published ONLY to the connection that
sent the request (and only if it subscribed), with no correlation token.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

import cbor2

from emulator.config import EmulatorConfig
from emulator.errors import (
    InvalidRequest,
    InvalidToken,
    ProvisioningError,
    TemplateNotFound,
    Throttled,
)
from emulator.fleet.faults import Faults, Plan
from emulator.fleet.hooks import call_pre_provisioning_hook
from emulator.fleet.operations import Request, match
from emulator.fleet.templates import TemplateStore, evaluate
from emulator.mqtt.connection import Connection
from emulator.mqtt.packets import Publish
from emulator.registry import Registry
from emulator.security import pki

log = logging.getLogger("emulator.fleet.handlers")

_TEMPLATE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,36}$")
Handler = Callable[[Connection, str | None, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclasses.dataclass(eq=False)
class FleetProvisioning:
    """The reserved-topic handler the broker calls for every `$`-topic publish."""

    config: EmulatorConfig
    authority: pki.CertificateAuthority
    registry: Registry
    templates: TemplateStore
    key_pool: pki.KeyPool
    faults: Faults

    def handle(self, connection: Connection, publish: Publish) -> bool:
        topic = publish.topic
        request = match(topic)
        if request is None:
            return False
        if connection.requests_in_flight >= self.config.limits.max_requests_in_flight:
            status, code = self.config.error_codes.throttled
            busy = Throttled(
                f"more than {self.config.limits.max_requests_in_flight} requests in "
                "flight on this connection",
                status=status,
                code=code,
            )
            connection.deliver(topic + "/rejected", _encode(busy.payload(), request.format))
            log.warning("%s: %s rejected: %s", connection.name, request.operation.name, busy.message)
            return True
        connection.spawn(self._serve(connection, request, topic, publish.payload))
        return True

    async def _serve(self, connection: Connection, request: Request, topic: str, payload: bytes) -> None:
        plan = self.faults.plan(request.operation.name)
        fault = plan.fault
        copy_delay = fault.second_copy_delay() if fault else None
        if fault and copy_delay is not None:
            # A QoS 1 request whose PUBACK was lost is sent again, and AWS handles the copy as a
            # request of its own: Create* issues a second certificate, a second RegisterThing
            # meets a token the first one may already have spent. Both copies are answered.
            copy = Plan(dataclasses.replace(fault, process_twice=False), plan.throttled)
            connection.spawn(self._serve_copy(copy_delay, connection, request, topic, payload, copy))
        await self._process(connection, request, topic, payload, plan)

    async def _serve_copy(
        self,
        delay: float,
        connection: Connection,
        request: Request,
        topic: str,
        payload: bytes,
        plan: Plan,
    ) -> None:
        await asyncio.sleep(delay)
        await self._process(connection, request, topic, payload, plan, " (second copy, injected fault)")

    async def _process(
        self,
        connection: Connection,
        request: Request,
        topic: str,
        payload: bytes,
        plan: Plan,
        note: str = "",
    ) -> None:
        started = time.perf_counter()
        label = request.label + note
        fmt = request.format
        handler: Handler = getattr(self, request.operation.name)
        fault = plan.fault
        if fault and fault.drop_connection:
            await connection.close(f"injected fault: drop connection during {label}")
            return
        if fault and fault.latency:
            await asyncio.sleep(fault.latency_seconds())
        try:
            self._apply_rejecting_faults(plan)
            body = await handler(connection, request.template_name, _decode(payload, fmt, self.config))
            answer_topic, outcome = topic + "/accepted", _describe(body)
        except ProvisioningError as exc:
            body = exc.payload()
            answer_topic, outcome = topic + "/rejected", f"{exc.code}: {exc.message}"
        except Exception:
            # A bug of ours: the client still gets an answer instead of waiting out its timeout.
            log.exception("%s: %s failed unexpectedly", connection.name, label)
            body = {
                "statusCode": 500,
                "errorCode": "InternalFailure",
                "errorMessage": "the emulator failed to process the request",
            }
            answer_topic, outcome = topic + "/rejected", "InternalFailure"
        if fault and fault.never_answer:
            log.info("%s: %s -> %s, answer withheld (injected fault)", connection.name, label, outcome)
            return
        if fault and fault.late:
            await asyncio.sleep(fault.late)
        encoded = _encode(body, fmt)
        delivered = connection.deliver(answer_topic, encoded)
        elapsed = (time.perf_counter() - started) * 1000
        if delivered:
            log.info("%s: %s -> %s (%.1f ms)", connection.name, label, outcome, elapsed)
        else:
            log.warning(
                "%s: %s -> %s, but not delivered: the client is not subscribed to %s "
                "(subscribe and wait for SUBACK before publishing)",
                connection.name,
                label,
                outcome,
                answer_topic,
            )
        repeat_delay = fault.second_answer_delay() if fault else None
        if repeat_delay is not None:
            # QoS 1 is at-least-once: the same answer can arrive again, later, even after the
            # answer to the client's next request.
            if repeat_delay:
                await asyncio.sleep(repeat_delay)
            if connection.deliver(answer_topic, encoded):
                log.info("%s: %s -> same answer again (injected fault)", connection.name, label)

    def _apply_rejecting_faults(self, plan: Plan) -> None:
        if plan.throttled:
            status, code = self.config.error_codes.throttled
            raise Throttled("Rate exceeded", status=status, code=code)
        if plan.fault and plan.fault.reject:
            status, code, message = plan.fault.reject
            raise ProvisioningError(message, status=status, code=code)

    # -- the three operations (named after AWS's) --------------------------------------------

    async def create_keys_and_certificate(
        self, connection: Connection, template_name: str | None, request: dict[str, Any]
    ) -> dict[str, Any]:
        # AWS: an RSA 2048 key pair, PKCS#1 PEM, made off the event loop (tens of ms of CPU).
        key = await asyncio.to_thread(self.key_pool.take)
        certificate = self.authority.issue(key.public_key())
        body = self._record(certificate)
        body["privateKey"] = pki.private_key_pem(key)
        return body

    async def create_certificate_from_csr(
        self, connection: Connection, template_name: str | None, request: dict[str, Any]
    ) -> dict[str, Any]:
        csr_pem = request.get("certificateSigningRequest")
        if not isinstance(csr_pem, str):
            raise self._invalid("certificateSigningRequest is required and must be a string")
        csr = pki.load_csr(csr_pem)
        return self._record(self.authority.issue(csr.public_key()))

    def _record(self, certificate: Any) -> dict[str, Any]:
        certificate_id = pki.certificate_id(certificate)
        token = self.registry.new_ownership_token()
        certificate_pem = pki.pem(certificate)
        self.registry.add_certificate(
            certificate_id, certificate_pem, status="PENDING_ACTIVATION", ownership_token=token
        )
        return {
            "certificateId": certificate_id,
            "certificatePem": certificate_pem,
            "certificateOwnershipToken": token,
        }

    async def register_thing(
        self, connection: Connection, template_name: str | None, request: dict[str, Any]
    ) -> dict[str, Any]:
        assert template_name is not None  # the operation's topic names it
        if not _TEMPLATE_NAME.match(template_name):
            raise self._not_found(template_name)
        token = request.get("certificateOwnershipToken")
        if not isinstance(token, str) or not token:
            raise InvalidToken("certificateOwnershipToken is required and must be a string")
        parameters = self._parameters(request)
        try:
            template = self.templates.get(template_name)
        except TemplateNotFound:
            raise self._not_found(template_name) from None
        # Peek first: a request that fails (missing parameter, hook denial) leaves the token
        # usable for a corrected retry within its hour; only success redeems it.
        certificate_id = self.registry.certificate_for_token(token)
        if template.pre_provisioning_hook_url:
            certificate = self.registry.describe_certificate(certificate_id) or {}
            event = {
                "claimCertificateId": connection.certificate_id,
                "certificateId": certificate_id,
                "certificatePem": certificate.get("certificatePem", ""),
                "templateArn": f"arn:aws:iot:emulator:000000000000:provisioningtemplate/{template_name}",
                "clientId": connection.client_id,
                "parameters": parameters,
            }
            decision = await asyncio.to_thread(
                call_pre_provisioning_hook,
                template.pre_provisioning_hook_url,
                event,
                min(template.pre_provisioning_hook_timeout, self.config.hook_timeout),
            )
            parameters = {**parameters, **decision.parameter_overrides}
        evaluation = evaluate(template, parameters, certificate_id)
        # The token is spent in the same transaction as the registration, so a failure (an
        # OverrideSettings FAIL, a missing policy) leaves it usable.
        thing_name = self.registry.register_thing(
            certificate_id, evaluation, template_name, ownership_token=token
        )
        return {"deviceConfiguration": dict(evaluation.device_configuration), "thingName": thing_name}

    def _parameters(self, request: dict[str, Any]) -> dict[str, str]:
        key = "parameters"
        if "parameters" not in request and "Parameters" in request:
            # Field evidence: AWS also reads a capitalised "Parameters" (a published browser
            # client sent it and AWS registered its thing).
            if self.config.strict_parameters:
                raise self._invalid("'Parameters' is not accepted; send 'parameters'")
            key = "Parameters"
        parameters = request.get(key, {})
        if parameters is None:
            parameters = {}
        if not isinstance(parameters, dict):
            raise self._invalid(f"{key} must be an object of string to string")
        for name, value in parameters.items():
            if not isinstance(value, str):
                raise self._invalid(f"{key}.{name} must be a string, got {type(value).__name__}")
        return parameters

    def _invalid(self, message: str) -> InvalidRequest:
        status, code = self.config.error_codes.invalid_request
        return InvalidRequest(message, status=status, code=code)

    def _not_found(self, template_name: str) -> TemplateNotFound:
        status, code = self.config.error_codes.template_not_found
        return TemplateNotFound(f"template '{template_name}' does not exist", status=status, code=code)


def _decode(payload: bytes, fmt: str, config: EmulatorConfig) -> dict[str, Any]:
    status, code = config.error_codes.invalid_request
    if not payload.strip():
        return {}  # CreateKeysAndCertificate's documented "empty" request
    try:
        request = json.loads(payload) if fmt == "json" else cbor2.loads(payload)
    except (ValueError, cbor2.CBORDecodeError, RecursionError) as exc:
        kind = "JSON" if fmt == "json" else "CBOR"
        raise InvalidRequest(
            f"payload is not valid {kind}: {str(exc)[:120]}", status=status, code=code
        ) from None
    if not isinstance(request, dict):
        raise InvalidRequest(
            f"payload must be a {fmt.upper()} object, got {type(request).__name__}",
            status=status,
            code=code,
        )
    return request


def _encode(body: dict[str, Any], fmt: str) -> bytes:
    return json.dumps(body).encode() if fmt == "json" else cbor2.dumps(body)


def _describe(body: dict[str, Any]) -> str:
    if "thingName" in body:
        return f"accepted, thing {body['thingName']!r}"
    return f"accepted, certificate {str(body.get('certificateId', ''))[:12]}..."
