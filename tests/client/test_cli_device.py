"""`iot-factory device`: one device, its key made here, its folder written; errors a person reads."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from factory_service import RunCli, Service
from served import free_port

from emulator import Emulator


@pytest.mark.parametrize(
    ("flag", "key_type"), [((), ec.EllipticCurvePrivateKey), (("--rsa",), rsa.RSAPrivateKey)]
)
def test_device_writes_key_certificate_ca_and_config(
    run_cli: RunCli,
    emulator: Emulator,
    tmp_path: Path,
    factory_key: str,
    flag: tuple[str, ...],
    key_type: type,
) -> None:
    out = tmp_path / "devices"
    done = run_cli(
        "device", "--template", "demo", "--param", "SerialNumber=D-1", "--param", "DeviceLocation=line-2",
        "--out", str(out), "--ca-file", str(emulator.ca_path), "--iot-endpoint", "iot.example:8883", *flag,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "demo-D-1" in done.stdout and factory_key not in done.stdout + done.stderr
    folder = out / "demo-D-1"
    assert sorted(p.name for p in folder.iterdir()) == [
        "ca.pem",
        "certificate.pem",
        "config.json",
        "private.key",
    ]
    assert stat.S_IMODE((folder / "private.key").stat().st_mode) == 0o600
    key = load_pem_private_key((folder / "private.key").read_bytes(), password=None)
    certificate = x509.load_pem_x509_certificate((folder / "certificate.pem").read_bytes())
    assert isinstance(key, key_type)
    assert certificate.public_key() == key.public_key()
    assert (folder / "ca.pem").read_bytes() == emulator.ca_path.read_bytes()
    config = json.loads((folder / "config.json").read_text())
    assert config == {
        "thingName": "demo-D-1",
        "certificateId": config["certificateId"],
        "deviceConfiguration": {"serial": "D-1", "location": "line-2"},
        "endpoint": "iot.example:8883",
    }
    thing = emulator.registry.describe_thing("demo-D-1")
    assert thing is not None and thing["principals"] == [config["certificateId"]]
    assert emulator.registry.describe_certificate(config["certificateId"])["status"] == "ACTIVE"  # type: ignore[index]


def test_device_without_a_ca_file_warns_and_writes_no_ca(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("device", "--template", "demo", "--param", "SerialNumber=D-2", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "No --ca-file: no ca.pem written" in done.stderr and "AmazonRootCA1" in done.stderr
    assert not (tmp_path / "demo-D-2" / "ca.pem").exists()
    assert (tmp_path / "demo-D-2" / "config.json").exists()


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"IOT_FACTORY_API_KEY": "iotp_wrong_0123456789abcdef"}, "refused the API key (401)"),
        ({"IOT_FACTORY_URL": "http://127.0.0.1:{port}"}, "cannot reach the provisioning service"),
    ],
)
def test_device_errors_are_one_readable_line_without_traceback_or_key(
    run_cli: RunCli, tmp_path: Path, env: dict[str, str], says: str
) -> None:
    env = {name: value.format(port=free_port()) for name, value in env.items()}
    done = run_cli(
        "device", "--template", "demo", "--param", "SerialNumber=D-3", "--out", str(tmp_path), **env
    )
    assert done.returncode == 1
    assert says in done.stderr and "Traceback" not in done.stderr
    assert "0123456789abcdef" not in done.stdout + done.stderr
    assert not (tmp_path / "demo-D-3").exists()


def test_device_not_enrolled_says_so(run_cli: RunCli, service: Service, tmp_path: Path) -> None:
    key = service.create_key(enrolledOnly=True)
    done = run_cli(
        "device",
        "--template",
        "demo",
        "--param",
        "SerialNumber=D-4",
        "--out",
        str(tmp_path),
        IOT_FACTORY_API_KEY=key,
    )
    assert done.returncode == 1 and "not enrolled" in done.stderr and "Traceback" not in done.stderr


def test_device_without_an_api_key_is_a_usage_error(run_cli: RunCli, tmp_path: Path) -> None:
    done = run_cli("device", "--template", "demo", "--out", str(tmp_path), IOT_FACTORY_API_KEY="")
    assert done.returncode == 2 and "IOT_FACTORY_API_KEY" in done.stderr
