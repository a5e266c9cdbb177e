"""`python -m service device-cas` as an operator runs it (a subprocess, its exit status, stdout and
stderr), on a real store (SQLite and PostgreSQL); what it did is checked in the store."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from attested import fingerprint
from operator_cli import run

from emulator.security.idevids import Manufacturer
from service.store import Store


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return result.stdout


def test_register_list_show_change_block_crl_and_delete(database_url: str, tmp_path: Path) -> None:
    maker = Manufacturer.create("Cli Devices")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(maker.ca_pem())
    registered = json.loads(
        ok(
            run(
                database_url,
                "device-cas",
                "register",
                "--template",
                "demo",
                "--certificates",
                str(bundle),
                "--from",
                "SerialNumber=subject.serialNumber",
                "--from",
                "DeviceId=san.uri",
                "--pattern",
                "DeviceId=^urn:dev:([0-9]+)$",
                "--value",
                "DeviceLocation=plant-3",
                "--name",
                "line 3",
                "--rate",
                "120",
                "--json",
            )
        )
    )
    ca_id = registered["caId"]
    assert registered["parameters"] == {
        "SerialNumber": {"from": "subject.serialNumber"},
        "DeviceId": {"from": "san.uri", "pattern": "^urn:dev:([0-9]+)$"},
        "DeviceLocation": {"value": "plant-3"},
    }
    listing = ok(run(database_url, "device-cas", "list"))
    assert ca_id in listing and "line 3" in listing and "120/min" in listing

    ok(run(database_url, "device-cas", "change", ca_id, "--reprovision", "allow", "--disable", "--no-rate"))
    _, certificate = maker.issue("CLI-000001")
    colons = ":".join(fingerprint(certificate)[i : i + 2] for i in range(0, 64, 2))
    assert "Blocked" in ok(run(database_url, "device-cas", "block", ca_id, "--serial", "CLI-000002"))
    assert "Blocked" in ok(run(database_url, "device-cas", "block", ca_id, "--fingerprint", colons))
    again = ok(run(database_url, "device-cas", "block", ca_id, "--serial", "CLI-000002"))
    assert "Already blocked" in again
    ok(run(database_url, "device-cas", "unblock", ca_id, "--serial", "CLI-000002"))
    crl = tmp_path / "maker.crl"
    crl.write_bytes(maker.intermediate.crl([certificate]))
    assert "1 revoked" in ok(run(database_url, "device-cas", "crl", "load", ca_id, str(crl)))

    shown = json.loads(ok(run(database_url, "device-cas", "show", ca_id, "--json")))
    assert (shown["reprovision"], shown["enabled"], shown["ratePerMinute"]) == ("allow", False, None)
    assert [(b["kind"], b["value"]) for b in shown["blocks"]] == [("fingerprint", fingerprint(certificate))]
    assert shown["crl"]["revoked"] == 1
    text = ok(run(database_url, "device-cas", "show", ca_id))
    assert "DeviceId=san.uri ~ ^urn:dev:([0-9]+)$" in text and "disabled" in text

    ok(run(database_url, "device-cas", "crl", "drop", ca_id))
    ok(run(database_url, "device-cas", "delete", ca_id, "--yes"))
    store = Store.open(database_url)
    try:
        assert store.device_cas.list() == []
    finally:
        store.close()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["register", "--template", "demo", "--from", "SerialNumber=subject.nothing"],
            "parameters.SerialNumber",
        ),
        (["register", "--template", "demo", "--pattern", "X=^(a)$"], "--pattern X=... needs --from X=SOURCE"),
        (["change", "c000000000000", "--rate", "5"], "no device CA with id 'c000000000000'"),
        (["block", "c000000000000"], "give one of --serial or --fingerprint"),
    ],
)
def test_bad_input_is_named_and_changes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    maker = Manufacturer.create("Cli Devices")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(maker.ca_pem())
    if args[0] == "register":
        args = [*args, "--certificates", str(bundle)]
    result = run(url, "device-cas", *args)
    assert result.returncode in (1, 2), result.stdout
    assert says in result.stderr and "Traceback" not in result.stderr
    store = Store.open(url)
    try:
        assert store.device_cas.list() == []
    finally:
        store.close()
