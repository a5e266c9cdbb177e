"""`--modes service+device`: attested provisions over mutual TLS, beside API-key provisions over the
same TLS listener, on one service.

One service (gunicorn, an SQLite store, PROVISIONER_BEHIND_PROXY) behind nginx's mutual-TLS
listener as the production shape renders it (service.serving.tls). A manufacturer CA is registered for
the template (reprovision allow: a device provisions again and again) and each caller is one
device with its own IDevID, so no two requests hold the same device's entry. Two modes share
that service and take turns:

    service+tls      an issued scoped key (as service+sqlite's), a CSR, over HTTPS without a
                     client certificate
    service+device   the device certificate over mutual TLS, a CSR, no key

so the difference in service CPU per provision is what attestation adds (the chain check, the
device's entry and the group's quota instead of the key's rules, enrollment match and quota).
nginx's TLS work is not the service's: it is its own process, outside the `svc cpu` column.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import ssl
import subprocess
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization

from bench.devices import TEMPLATE, Csr, Evidence, FlowError, answered
from bench.modes import HTTP_TIMEOUT, ServiceCaller
from bench.processes import STOP_TIMEOUT, ServiceProcess, free_port
from emulator.security.idevids import Manufacturer
from service.serving import tls
from service.serving.nginx import find_nginx, render_nginx_config

MODES = ("service+tls", "service+device")
SERIAL_PREFIX = "BENCH-DEV-"


class AttestedService:
    """The service with nginx's mutual-TLS listener in front, a registered CA and its devices."""

    def __init__(self, env: dict[str, str], log_file: IO[str], *, workers: int, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.service = ServiceProcess(
            {
                **env,
                "PROVISIONER_DATABASE_URL": f"sqlite:///{folder / 'provisioner.db'}",
                "PROVISIONER_BEHIND_PROXY": "true",
            },
            log_file,
            workers=workers,
        )
        self.port = free_port()
        self.listener = tls.local_listener(f"127.0.0.1:{self.port}", folder / "tls")
        config = folder / "nginx.conf"
        config.write_text(
            render_nginx_config(
                listen=None,
                upstream=f"127.0.0.1:{self.service.port}",
                run_dir=folder,
                max_body_bytes=65536,
                as_root=os.geteuid() == 0,
                rate_per_address=100_000,
                tls=self.listener,
            )
        )
        self.nginx = subprocess.Popen(
            [find_nginx(), "-p", str(folder), "-c", str(config)], stdout=log_file, stderr=log_file
        )
        self.devices: list[tuple[str, Path, Path]] = []  # (serial, certificate chain, key)

    def prepare(self, admin_key: str, devices: int) -> None:
        """Register a manufacturer CA for the template and make `devices` IDevIDs under it."""
        maker = Manufacturer.create("Bench Devices")
        body = {
            "template": TEMPLATE,
            "certificates": maker.ca_pem().decode(),
            "parameters": {"SerialNumber": {"from": "subject.serialNumber"}},
            "reprovision": "allow",
        }
        connection = http.client.HTTPConnection("127.0.0.1", self.service.port, timeout=30)
        try:
            headers = {"Authorization": f"Bearer {admin_key}", "Content-Type": "application/json"}
            connection.request("POST", "/admin/device-cas", json.dumps(body).encode(), headers)
            response = connection.getresponse()
            answer = response.read()
        finally:
            connection.close()
        if response.status != 201:
            raise RuntimeError(f"cannot register the benchmark's device CA: {response.status} {answer!r}")
        for number in range(devices):
            serial = f"{SERIAL_PREFIX}{number:04d}"
            key, certificate = maker.issue(serial)
            chain, key_file = self.folder / f"{serial}.pem", self.folder / f"{serial}.key"
            pem = serialization.Encoding.PEM
            chain.write_bytes(
                certificate.public_bytes(pem) + maker.intermediate.certificate.public_bytes(pem)
            )
            key_file.write_bytes(
                key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
            )
            self.devices.append((serial, chain, key_file))

    def context(self, device: int | None = None) -> ssl.SSLContext:
        """A client context trusting the listener; with a device's certificate, or none."""
        context = ssl.create_default_context(cafile=str(self.listener.ca))
        if device is not None:
            _, chain, key = self.devices[device % len(self.devices)]
            context.load_cert_chain(chain, key)
        return context

    def stop(self) -> None:
        if self.nginx.poll() is None:
            self.nginx.send_signal(signal.SIGQUIT)
            try:
                self.nginx.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.nginx.kill()
                self.nginx.wait()
        self.service.stop()


class DeviceCaller:
    """One device: its IDevID over a kept-alive mutual-TLS connection, a new CSR each time."""

    def __init__(self, port: int, serial: str, context: ssl.SSLContext, flow: str) -> None:
        self.serial, self.flow = serial, flow
        self.connection = http.client.HTTPSConnection(
            "localhost", port, timeout=HTTP_TIMEOUT, context=context
        )
        self.headers = {"Content-Type": "application/json"}

    def setup(self) -> None:
        self.connection.connect()

    def provision(self, serial: str, csr: Csr) -> Evidence:
        # The device's serial is its certificate's: `serial` (the runner's) is not its to choose.
        body: dict[str, Any] = {"csr": csr.pem} if self.flow == "csr" else {}
        try:
            self.connection.request("POST", "/provision", json.dumps(body).encode(), self.headers)
            response = self.connection.getresponse()
            payload = response.read()
        except (OSError, http.client.HTTPException) as exc:
            self.connection.close()
            raise FlowError("http", f"{type(exc).__name__}: {exc}") from None
        if response.status != 201:
            raise FlowError(f"HTTP {response.status}", payload[:200].decode("utf-8", "replace"))
        return answered(self.serial, payload, csr if self.flow == "csr" else None)

    def teardown(self) -> None:
        self.connection.close()


def callers(mode: str, n: int, flow: str, attested: AttestedService, key: str) -> list[Any]:
    if mode == "service+tls":
        return [
            ServiceCaller(attested.port, key, flow, context=attested.context(), host="localhost")
            for _ in range(n)
        ]
    return [DeviceCaller(attested.port, attested.devices[i][0], attested.context(i), flow) for i in range(n)]
