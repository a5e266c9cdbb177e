"""The three ways of provisioning, as callers that one thread each drives in a loop.

    service              POST /provision over a kept-alive HTTP connection
    service+device       a device's certificate over mutual TLS, beside an API key over the same
                         TLS listener (bench.attested)
    connect-per-request  per device: connect (WebSocket + SigV4), subscribe, create, subscribe to
                         the template topics, register, disconnect (a browser page, a sample)
    direct-pool          one persistent MQTT connection per caller, subscribed once, running the
                         two requests back to back: the floor, with no HTTP in between

A caller runs one flow at a time; `setup` and `teardown` are outside the timed window.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
import uuid
from typing import Protocol

from bench.devices import (
    REGISTER_TOPIC,
    TEMPLATE,
    Csr,
    Endpoint,
    Evidence,
    FlowError,
    MqttDevice,
    answer_filters,
    answered,
    create_request,
    provision_over,
    unique_client_id,
)

# service+device: attested provisions over mutual TLS beside key ones over the same TLS listener
# (bench.attested), as the two modes service+tls and service+device.
MODES = ("service", "connect-per-request", "direct-pool", "service+device")
DEFAULT_MODES = MODES[:3]  # service+device needs nginx: asked for by name
STEP_TIMEOUT = 15.0  # one MQTT answer (the service's own deadline is its setting)
HTTP_TIMEOUT = 60.0  # one HTTP request, queueing included


class Caller(Protocol):
    def setup(self) -> None: ...

    def provision(self, serial: str, csr: Csr) -> Evidence: ...

    def teardown(self) -> None: ...


class ServiceCaller:
    """One HTTP client with a kept-alive connection, as an application would hold one."""

    def __init__(
        self,
        port: int,
        api_key: str,
        flow: str,
        *,
        idempotent: bool = False,
        context: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        """`context`: over HTTPS (bench.attested's TLS listener) with this client context."""
        self.port, self.flow, self.idempotent = port, flow, idempotent
        self.headers = {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json"}
        self.connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection(host, port, timeout=HTTP_TIMEOUT, context=context)
            if context is not None
            else http.client.HTTPConnection(host, port, timeout=HTTP_TIMEOUT)
        )

    def setup(self) -> None:
        self.connection.connect()

    def provision(self, serial: str, csr: Csr) -> Evidence:
        body: dict[str, object] = {"templateName": TEMPLATE, "parameters": {"SerialNumber": serial}}
        if self.flow == "csr":
            body["csr"] = csr.pem
        try:
            # http.client sends a bytes body in the same segment as the headers (no Nagle stall).
            headers = self.headers
            if self.idempotent:  # as a factory tool sends: every request may be retried safely
                headers = {**headers, "Idempotency-Key": uuid.uuid4().hex}
            self.connection.request("POST", "/provision", json.dumps(body).encode(), headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()  # the next request opens a new connection
            raise FlowError("http", f"{type(exc).__name__}: {exc}") from None
        if response.status != 201:
            try:
                problem = json.loads(payload)
                detail = f"{problem.get('title', '')}: {problem.get('detail', '')}"[:200]
            except ValueError:
                detail = payload[:200].decode("utf-8", "replace")
            retry = response.getheader("Retry-After")
            raise FlowError(f"HTTP {response.status}", detail + (f" (Retry-After {retry})" if retry else ""))
        return answered(serial, payload, csr if self.flow == "csr" else None)

    def teardown(self) -> None:
        self.connection.close()


class ConnectPerRequestCaller:
    """A device's own flow: a fresh connection, fresh client id and fresh subscriptions each time."""

    def __init__(self, endpoint: Endpoint, flow: str) -> None:
        self.endpoint, self.flow = endpoint, flow

    def setup(self) -> None:
        pass

    def provision(self, serial: str, csr: Csr) -> Evidence:
        device = MqttDevice(self.endpoint, unique_client_id("bench-cpr"))
        try:
            deadline = lambda: time.monotonic() + STEP_TIMEOUT  # noqa: E731
            device.connect(deadline())
            topic, body = create_request(self.flow, csr)
            device.subscribe(answer_filters(topic), deadline())
            created = device.ask(topic, body, deadline())
            device.subscribe(answer_filters(REGISTER_TOPIC), deadline())
            registered = device.ask(
                REGISTER_TOPIC,
                {
                    "certificateOwnershipToken": created["certificateOwnershipToken"],
                    "parameters": {"SerialNumber": serial},
                },
                deadline(),
            )
        finally:
            device.disconnect()
        return Evidence(
            serial,
            str(registered.get("thingName")),
            created["certificatePem"],
            csr if self.flow == "csr" else None,
            created.get("privateKey"),
        )

    def teardown(self) -> None:
        pass


class DirectPoolCaller:
    """One persistent connection, subscribed once to every answer topic it will need."""

    def __init__(self, endpoint: Endpoint, flow: str) -> None:
        self.endpoint, self.flow = endpoint, flow
        self.device: MqttDevice | None = None

    def setup(self) -> None:
        self.device = self._connect()

    def _connect(self) -> MqttDevice:
        device = MqttDevice(self.endpoint, unique_client_id("bench-pool"), qos=0)
        deadline = time.monotonic() + STEP_TIMEOUT
        device.connect(deadline)
        topic, _ = create_request(self.flow, Csr("", b""))
        device.subscribe(answer_filters(topic) + answer_filters(REGISTER_TOPIC), deadline)
        return device

    def provision(self, serial: str, csr: Csr) -> Evidence:
        if self.device is None:
            self.device = self._connect()
        try:
            return provision_over(self.device, self.flow, serial, csr, STEP_TIMEOUT)
        except FlowError as exc:
            if exc.kind != "rejected":
                # A late answer could pass for the next flow's: replace the connection, as the
                # service does with a link that timed out.
                self.device.disconnect()
                self.device = None
            raise

    def teardown(self) -> None:
        if self.device is not None:
            self.device.disconnect()
