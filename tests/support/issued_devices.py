"""Devices with a certificate of their own (provisioned through the service, POST /provision with a
CSR made here, or straight over MQTT: tests/support/iot_control.py), their key and certificate on
disk, ready to connect to the emulator over mutual TLS as the device would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from device_keys import make_csr
from mqtt_support import MqttTestClient

from emulator import Emulator


@dataclass(frozen=True)
class IssuedDevice:
    thing_name: str
    certificate_id: str
    cert_path: Path
    key_path: Path

    @property
    def certificate_arn(self) -> str:
        """The certificate's ARN as the emulator names it (its account 000000000000, us-east-1)."""
        return f"arn:aws:iot:us-east-1:000000000000:cert/{self.certificate_id}"

    def client(self, emulator: Emulator, **kwargs: Any) -> MqttTestClient:
        """An MQTT client over mutual TLS with the device's own certificate."""
        return MqttTestClient(
            emulator.urls["mqtts"],
            ca_file=str(emulator.ca_path),
            cert=str(self.cert_path),
            key=str(self.key_path),
            **kwargs,
        )


def provision_through(
    post: Callable[..., Any], directory: Path, serial: str, *, template: str = "demo"
) -> IssuedDevice:
    """POST /provision with a fresh P-256 CSR for `serial`; `post(path, json=...)` returns a
    requests.Response (the test's API client). The key never leaves this machine."""
    key_pem, csr_pem = make_csr(serial)
    answer = post(
        "/provision", json={"templateName": template, "parameters": {"SerialNumber": serial}, "csr": csr_pem}
    )
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return saved(directory, serial, body, key_pem)


def saved(directory: Path, serial: str, answer: dict[str, Any], key_pem: str) -> IssuedDevice:
    """The device whose certificate `answer` (thingName, certificateId, certificatePem) holds, its
    certificate and key written to `directory` as <serial>.pem and <serial>.key (0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = directory / f"{serial}.pem", directory / f"{serial}.key"
    cert_path.write_text(answer["certificatePem"])
    key_path.write_text(key_pem)
    key_path.chmod(0o600)
    return IssuedDevice(answer["thingName"], answer["certificateId"], cert_path, key_path)
