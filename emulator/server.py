"""The emulator assembled: PKI, registry, templates, broker, control plane and listeners on one
event loop.

Certificate status is enforced on the wire, as AWS IoT does it (UpdateCertificate's reference:
"Within a few minutes of updating a certificate from the ACTIVE state to any other state, IoT
disconnects all devices that used that certificate to connect. Devices cannot use a certificate
that is not in the ACTIVE state to reconnect."): the TLS listener's CONNECT asks the registry,
and when a certificate changes (through the control plane, RegisterThing, expiry or the Python
API) its connections are checked again `certificate_disconnect_delay` later and closed if they
may no longer connect.

`Emulator` runs either on the caller's event loop (`await emulator.serve()`, used by the CLI) or
in a thread of its own (`emulator.start()` ... `emulator.stop()`, used by tests and by anything
embedding it).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import logging
import tempfile
import threading
from pathlib import Path
from typing import Any

from emulator.config import EmulatorConfig
from emulator.control.service import ControlPlane
from emulator.errors import EmulatorError
from emulator.fleet.faults import Fault, Faults
from emulator.fleet.handlers import FleetProvisioning
from emulator.fleet.templates import TemplateStore
from emulator.listeners import Listener, ListenerFactory
from emulator.mqtt import packets5
from emulator.mqtt.broker import Broker
from emulator.mqtt.connection import Connection
from emulator.registry import Registry, access, expiry
from emulator.security.pki import CertificateAuthority, KeyPool

log = logging.getLogger("emulator")


class Emulator:
    def __init__(self, config: EmulatorConfig | None = None, **changes: Any) -> None:
        config = config or EmulatorConfig()
        self.config = dataclasses.replace(config, **changes) if changes else config
        # Without a data directory the emulator keeps its state in a temporary one, its own to
        # remove at stop (tests and benchmarks start hundreds of emulators).
        self._own_dir: tempfile.TemporaryDirectory[str] | None = None
        if self.config.data_dir is None:
            self._own_dir = tempfile.TemporaryDirectory(prefix="iot-emulator-")
            self.data_dir = Path(self._own_dir.name)
        else:
            self.data_dir = Path(self.config.data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.faults = Faults()
            self.authority = CertificateAuthority.load_or_create(self.data_dir)
            self.registry = Registry(
                self.data_dir / "registry.sqlite3",
                clock=self.config.clock,
                token_lifetime=self.config.token_lifetime,
                default_override=self.config.default_override,
            )
            self.templates = TemplateStore(self.config.templates_dir)
            self.registry.on_certificate_change(self._certificate_changed)
            self._register_claim_certificate()
        except BaseException:
            if self._own_dir is not None:
                self._own_dir.cleanup()
            raise
        self.listeners: list[Listener] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._factory: ListenerFactory | None = None
        self._broker: Broker | None = None
        self._rechecks: set[asyncio.Task[None]] = set()
        self._latest_change: dict[str, int] = {}  # certificate id -> number of its latest recheck
        self._change_numbers = itertools.count(1)

    # -- files and addresses -----------------------------------------------------------------

    @property
    def ca_path(self) -> Path:
        return Path(self.authority.ca_path)

    @property
    def claim_cert_path(self) -> Path:
        return Path(self.authority.claim_cert_path)

    @property
    def claim_key_path(self) -> Path:
        return Path(self.authority.claim_key_path)

    @property
    def ports(self) -> dict[str, int]:
        return {listener.scheme: listener.port for listener in self.listeners}

    @property
    def urls(self) -> dict[str, str]:
        return {listener.scheme: listener.url(self.config.host) for listener in self.listeners}

    def ready_info(self) -> dict[str, Any]:
        """What the CLI prints once ready: every listener's URL and the files a client needs."""
        access_key_id = next(iter(self.config.credentials), None)
        return {
            "event": "ready",
            "listeners": self.urls,
            "caFile": str(self.ca_path),
            "claimCertificate": str(self.claim_cert_path),
            "claimKey": str(self.claim_key_path),
            "dataDir": str(self.data_dir),
            "templates": self.templates.names(),
            "accessKeyId": access_key_id,
        }

    # -- state for tests and tools -----------------------------------------------------------

    def reset(self) -> None:
        """Forget every certificate, thing and fault (the CA and claim certificate stay)."""
        self.faults.clear()
        self.registry.reset()
        self._register_claim_certificate()

    def set_fault(self, operation: str, fault: Fault) -> None:
        self.faults.set(operation, fault)

    def add_fault(self, operation: str, fault: Fault) -> None:
        """Add a fault with a chance to the operation's mix (`Faults.add`)."""
        self.faults.add(operation, fault)

    def connected_client_ids(self) -> list[str]:
        return [c.client_id for c in self._connections() if c.client_id]

    def _connections(self) -> list[Connection]:
        return self._broker.connections if self._broker else []

    def publish_to(self, client_id: str, topic: str, payload: bytes) -> bool:
        """Send one QoS 0 message to one client if it subscribed to `topic`, from any thread: a
        stray or foreign answer as a client may meet one (for tests of correlation)."""

        async def send() -> bool:
            for connection in self._connections():
                if connection.client_id == client_id:
                    return connection.deliver(topic, payload, qos=0)
            return False

        return bool(self._call_in_loop(send()))

    def disconnect_all(self) -> None:
        """Drop every client connection (as AWS may at any time), from any thread."""
        self._call_in_loop(self._close_connections("disconnect requested"))

    def _register_claim_certificate(self) -> None:
        claim_id = self.authority.claim_certificate_id
        if self.registry.certificate_status(claim_id) is None:
            self.registry.add_certificate(
                claim_id, Path(self.authority.claim_cert_path).read_text(), status="ACTIVE", owner="claim"
            )

    # -- running -----------------------------------------------------------------------------

    async def serve(self, ready: threading.Event | None = None) -> None:
        """Run until `stop()` (or cancellation); set `ready` once every listener accepts."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        key_pool = KeyPool(size=self.config.key_pool_size, algorithm=self.config.key_algorithm)
        key_pool.start()
        handler = FleetProvisioning(
            self.config, self.authority, self.registry, self.templates, key_pool, self.faults
        )
        self._broker = broker = Broker(handler, authorizer=self._authorize)
        control = ControlPlane(self.config, self.registry, self.authority)
        self._factory = ListenerFactory(self.config, broker, self.authority, self.config.clock, control)
        sweeper = asyncio.create_task(expiry.sweep(self.registry, self.config.clock))
        try:
            self.listeners = await self._factory.start_all()
            for scheme, url in self.urls.items():
                log.info("listening: %s (%s)", url, scheme)
            self._ready.set()
            if ready is not None:
                ready.set()
            await self._stopping.wait()
        finally:
            sweeper.cancel()
            for task in list(self._rechecks):
                task.cancel()
            for listener in self.listeners:
                listener.close()
            await self._close_connections("emulator stopping")
            await self._factory.close_http()
            key_pool.stop()
            log.info("stopped")

    def is_ready(self) -> bool:
        return self._ready.is_set() and self._failure is None

    def request_stop(self) -> None:
        """Ask `serve()` to finish; call from the emulator's own loop (signal handlers)."""
        if self._stopping is not None:
            self._stopping.set()

    def start(self, timeout: float = 30.0) -> Emulator:
        """Run in a background thread; return once ready (raise if it failed to start)."""
        if self._thread is not None:
            raise EmulatorError("emulator already started")
        self._thread = threading.Thread(target=self._thread_main, name="iot-emulator", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise EmulatorError(f"emulator not ready within {timeout} s")
        if self._failure is not None:
            self.stop()
            raise EmulatorError(f"emulator failed to start: {self._failure}") from self._failure
        return self

    def _thread_main(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # reported to start()'s caller, then the thread ends
            self._failure = exc
            log.exception("emulator failed")
            self._ready.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop listening, close every connection and join the thread (idempotent)."""
        if self._loop is not None and self._stopping is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._stopping.set)
            except RuntimeError:
                pass  # the loop already ended
        ended = True
        if self._thread is not None:
            self._thread.join(timeout)
            ended = not self._thread.is_alive()
            self._thread = None
        self.registry.close()
        if self._own_dir is not None and ended:  # a loop still running may still write there
            self._own_dir.cleanup()

    def __enter__(self) -> Emulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- internals ---------------------------------------------------------------------------

    def _authorize(self, connection: Connection) -> str | None:
        return access.connect_refusal(
            self.registry, connection.certificate_id, require_active=self.config.require_active_certificates
        )

    async def _close_connections(self, reason: str) -> None:
        if self._broker is not None:
            await self._broker.close_all(reason)

    def _certificate_changed(self, certificate_id: str) -> None:
        """The registry's listener: called from whichever thread changed the certificate."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._schedule_recheck, certificate_id)
        except RuntimeError:
            pass  # the loop closed in between: no connections left to check

    def _schedule_recheck(self, certificate_id: str) -> None:
        number = self._latest_change[certificate_id] = next(self._change_numbers)
        task = asyncio.ensure_future(self._recheck(certificate_id, number))
        self._rechecks.add(task)
        task.add_done_callback(self._rechecks.discard)

    async def _recheck(self, certificate_id: str, number: int) -> None:
        await asyncio.sleep(self.config.certificate_disconnect_delay)
        if self._latest_change.get(certificate_id) != number:
            return  # changed again since: the delay runs from the latest change
        del self._latest_change[certificate_id]
        for connection in self._connections():
            if connection.certificate_id != certificate_id or connection.client_id is None:
                continue
            refusal = self._authorize(connection)
            if refusal:
                # An MQTT 5 client is told 0x87 Not authorized (what AWS sends then is
                # unconfirmed); a 3.1.1 client sees the connection close.
                await connection.close(refusal, reason_code=packets5.NOT_AUTHORIZED)

    def _call_in_loop(self, coroutine: Any) -> Any:
        if self._loop is None or self._loop.is_closed():
            coroutine.close()
            return None
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(10)
