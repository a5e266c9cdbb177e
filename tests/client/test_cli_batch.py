"""`iot-factory batch`: many devices, resumable after a SIGKILL, one identity per row, failures listed."""

from __future__ import annotations

import csv
import json
import shlex
import shutil
import signal
import stat
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from factory_service import CLI, CLI_TIMEOUT, RunCli, Service, batch_args

from emulator import Emulator, Fault

ROWS = 60
SERIAL_COLUMN = ("--column", "SerialNumber=serial")


def write_csv(path: Path, serials: list[str]) -> Path:
    with open(path, "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["serial", "location"])
        writer.writerows([serial, "hall-7"] for serial in serials)
    return path


def complete_folders(out: Path) -> list[Path]:
    return [folder for folder in out.glob("demo-*") if (folder / "config.json").exists()]


def test_batch_killed_midway_resumes_with_exactly_one_identity_per_row(
    service: Service, emulator: Emulator, cli_env: dict[str, str], run_cli: RunCli, tmp_path: Path
) -> None:
    serials = [f"B-{n:04d}" for n in range(ROWS)]
    rows = write_csv(tmp_path / "serials.csv", serials)
    out = tmp_path / "devices"
    args = batch_args(rows, out, "--concurrency", "4", *SERIAL_COLUMN, "--column", "DeviceLocation=location",
                      "--ca-file", str(emulator.ca_path))  # fmt: skip
    emulator.set_fault("register_thing", Fault(latency=(0.05, 0.1)))  # slow enough to stop midway

    first = subprocess.Popen([*CLI, *args], env=cli_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + CLI_TIMEOUT
    while len(complete_folders(out)) < ROWS // 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(30)
    at_kill = len(complete_folders(out))
    under_way = [d for d in (out / ".batch").iterdir() if not (d / "thing-name").exists()]
    assert ROWS // 4 < at_kill < ROWS, f"not killed midway: {at_kill} of {ROWS} done"
    assert under_way, "no device was under way at the kill"

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "provisioned" in rerun.stdout and "already done" in rerun.stdout

    # The output: one complete folder per row, keys 0600, no key left in the state folders.
    folders = complete_folders(out)
    assert sorted(f.name for f in folders) == sorted(f"demo-{s}" for s in serials)
    for folder in folders:
        assert stat.S_IMODE((folder / "private.key").stat().st_mode) == 0o600
    assert not list((out / ".batch").glob("*/private.key"))
    assert not (out / "failures.csv").exists()

    # The registry: one thing per serial, each with exactly one certificate, the one in its folder.
    things = {t["thingName"]: t for t in emulator.registry.list_things()}
    assert sorted(things) == sorted(f"demo-{s}" for s in serials)
    issued = [c for c in emulator.registry.list_certificates() if c["owner"] == "fleet-provisioning"]
    assert len(issued) == ROWS and all(c["status"] == "ACTIVE" for c in issued)
    for folder in folders:
        config = json.loads((folder / "config.json").read_text())
        assert things[folder.name]["principals"] == [config["certificateId"]]

    # The audit: one `provisioned` per serial; every other attempt is a replay (or a 409 "still
    # running" met by the rerun while a killed run's request was finishing).
    records = service.registrations(template="demo")
    provisioned = Counter(r["parameters"]["SerialNumber"] for r in records if r["outcome"] == "provisioned")
    assert provisioned == Counter(serials)
    others = [r for r in records if r["outcome"] != "provisioned"]
    assert all(r["outcome"] == "replayed" or r["problem"] == "idempotency-in-progress" for r in others), (
        others
    )
    replayed = [r for r in others if r["outcome"] == "replayed"]
    assert replayed, "the rerun recovered no device by replay"
    print(f"\n{ROWS} rows, killed at {at_kill} done / {len(under_way)} under way; "
          f"rerun: {len(replayed)} replayed, {len(others) - len(replayed)} in-progress 409s")  # fmt: skip


def test_batch_lists_failed_rows_exits_1_and_a_rerun_does_only_what_is_missing(
    service: Service, emulator: Emulator, run_cli: RunCli, tmp_path: Path
) -> None:
    key = service.create_key(
        templates=["demo"], serverKeys=False, parameterRules={"SerialNumber": "^SN-[0-9]+$"}
    )
    service.enroll("SN-4", enabled=False)
    rows = write_csv(tmp_path / "serials.csv", ["SN-1", "SN-2", "XX-3", "SN-4", "SN-5"])
    out = tmp_path / "devices"
    args = batch_args(rows, out, *SERIAL_COLUMN)

    done = run_cli(*args, IOT_FACTORY_API_KEY=key)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and key not in done.stdout + done.stderr
    with open(out / "failures.csv", newline="") as file:
        failures = list(csv.DictReader(file))
    assert [(f["row"], json.loads(f["parameters"]), f["status"]) for f in failures] == [
        ("4", {"SerialNumber": "XX-3"}, "403"),
        ("5", {"SerialNumber": "SN-4"}, "403"),
    ]
    assert "rule" in failures[0]["reason"] and "disabled" in failures[1]["reason"]
    assert sorted(t["thingName"] for t in emulator.registry.list_things()) == [
        "demo-SN-1",
        "demo-SN-2",
        "demo-SN-5",
    ]

    service.enroll("SN-4", enabled=True)
    again = run_cli(*args, IOT_FACTORY_API_KEY=key)
    assert again.returncode == 1
    with open(out / "failures.csv", newline="") as file:
        second = list(csv.DictReader(file))
        assert [f["row"] for f in second] == ["4"], second
    assert len(emulator.registry.list_things()) == 4
    attempts = Counter(r["parameters"]["SerialNumber"] for r in service.registrations(template="demo"))
    assert attempts == {"SN-1": 1, "SN-2": 1, "XX-3": 2, "SN-4": 2, "SN-5": 1}  # done rows were not resent


def test_batch_usage_errors_exit_2(run_cli: RunCli, tmp_path: Path) -> None:
    rows = write_csv(tmp_path / "serials.csv", ["SN-1"])
    done = run_cli("batch", "--csv", str(rows), "--template", "demo", "--column", "SerialNumber=nosuch")
    assert done.returncode == 2 and "no column nosuch" in done.stderr


@pytest.mark.parametrize(
    ("stop", "sigint_ignored"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["ctrl-c", "ctrl-c-started-with-sigint-ignored", "sigterm"],
)
def test_batch_ctrl_c_lets_the_devices_under_way_finish_and_exits_130(
    emulator: Emulator,
    cli_env: dict[str, str],
    run_cli: RunCli,
    tmp_path: Path,
    stop: signal.Signals,
    sigint_ignored: bool,
) -> None:
    serials = [f"I-{n:02d}" for n in range(20)]
    rows = write_csv(tmp_path / "serials.csv", serials)
    out = tmp_path / "devices"
    args = batch_args(rows, out, "--concurrency", "2", *SERIAL_COLUMN)
    emulator.set_fault("register_thing", Fault(latency=(0.3, 0.3)))

    command = [*CLI, *args]
    if sigint_ignored:  # as a shell starts a background job: the CLI inherits SIG_IGN for SIGINT
        command = ["sh", "-c", f"trap '' INT; exec {shlex.join(command)}"]
    first = subprocess.Popen(command, env=cli_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + CLI_TIMEOUT
    while len(complete_folders(out)) < 3 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(stop)
    stdout, stderr = first.communicate(timeout=30)
    assert first.returncode == 130, stdout + stderr
    assert "Interrupted" in stdout and "not attempted" in stdout and "Traceback" not in stderr
    started = list((out / ".batch").iterdir())
    assert 3 <= len(started) < len(serials)
    half_way = [state.name for state in started if not (state / "thing-name").exists()]
    assert not half_way, (half_way, stdout, stderr)  # none left half-way

    emulator.faults.clear()
    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert sorted(t["thingName"] for t in emulator.registry.list_things()) == [f"demo-{s}" for s in serials]


@pytest.mark.parametrize(
    ("more", "env", "said"),
    [
        ([], {"IOT_FACTORY_API_KEY": "iotp_wrong_0123456789abcdef"}, ["Stopped:", "refused the API key"]),
        (["--max-retries", "1"], {"IOT_FACTORY_URL": "http://127.0.0.1:1"},
         ["cannot reach the provisioning service"]),
    ],
    ids=["refused-key-stops-at-once", "no-service-stops-after-the-retries"],
)  # fmt: skip
def test_batch_that_cannot_go_on_stops_and_exits_1(
    run_cli: RunCli, tmp_path: Path, more: list[str], env: dict[str, str], said: list[str]
) -> None:
    rows = write_csv(tmp_path / "serials.csv", [f"S-{n}" for n in range(10)])
    args = batch_args(rows, tmp_path / "out", "--concurrency", "2", *more, *SERIAL_COLUMN)
    done = run_cli(*args, **env)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert all(phrase in done.stdout for phrase in [*said, "not attempted"]), done.stdout
    assert "0123456789abcdef" not in done.stdout + done.stderr  # a refused key is never printed


def fleet_certificates(emulator: Emulator) -> list[str]:
    return [
        c["certificateId"]
        for c in emulator.registry.list_certificates()
        if c["owner"] == "fleet-provisioning"
    ]


def test_batch_reports_a_done_row_whose_folder_was_removed_and_does_not_provision_it_again(
    service: Service, emulator: Emulator, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = write_csv(tmp_path / "serials.csv", ["SN-1", "SN-2"])
    out = tmp_path / "devices"
    first = run_cli(*batch_args(rows, out, *SERIAL_COLUMN))
    assert first.returncode == 0, first.stdout + first.stderr
    issued = fleet_certificates(emulator)
    assert len(issued) == 2
    shutil.rmtree(out / "demo-SN-1")  # its private key existed only there

    rerun = run_cli(*batch_args(rows, out, *SERIAL_COLUMN))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "Traceback" not in rerun.stderr
    assert "folder is missing" in rerun.stdout and "demo-SN-1" in rerun.stdout
    assert "demo-SN-2" not in rerun.stdout  # its folder is there: nothing to say
    assert not (out / "demo-SN-1").exists()
    assert fleet_certificates(emulator) == issued  # no second identity
    assert len(service.registrations(template="demo")) == 2  # nothing was sent


def test_batch_replaces_a_lost_key_with_a_new_csr_and_idempotency_key(
    service: Service, emulator: Emulator, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = write_csv(tmp_path / "serials.csv", ["SN-1"])
    out = tmp_path / "devices"
    emulator.set_fault("register_thing", Fault(reject=(500, "InternalFailure", "try later")))
    failed = run_cli(*batch_args(rows, out, *SERIAL_COLUMN, "--max-retries", "0"))
    assert failed.returncode == 1, failed.stdout + failed.stderr
    (state,) = (out / ".batch").iterdir()
    old_csr = (state / "request.csr").read_bytes()
    old_key = (state / "idempotency-key").read_text()
    (state / "private.key").unlink()  # lost: the CSR and Idempotency-Key that went with it are stale

    emulator.faults.clear()
    rerun = run_cli(*batch_args(rows, out, *SERIAL_COLUMN))
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert (state / "request.csr").read_bytes() != old_csr
    new_key = (state / "idempotency-key").read_text()
    assert new_key != old_key
    config = json.loads((out / "demo-SN-1" / "config.json").read_text())
    thing = emulator.registry.describe_thing("demo-SN-1")
    assert thing is not None and thing["principals"] == [config["certificateId"]]
    provisioned = [r for r in service.registrations(template="demo") if r["outcome"] == "provisioned"]
    assert [r["idempotencyKey"] for r in provisioned] == [new_key]


def test_batch_into_another_out_folder_uses_its_own_idempotency_keys(
    service: Service, emulator: Emulator, run_cli: RunCli, tmp_path: Path
) -> None:
    rows = write_csv(tmp_path / "serials.csv", ["SN-1"])
    keys = []
    for name in ("line-a", "line-b"):
        done = run_cli(*batch_args(rows, tmp_path / name, *SERIAL_COLUMN))
        assert done.returncode == 0, done.stdout + done.stderr  # not 422 idempotency-key-reused
        (state,) = (tmp_path / name / ".batch").iterdir()
        key = (state / "idempotency-key").read_text()
        assert key.startswith("iot-factory-") and uuid.UUID(key.removeprefix("iot-factory-")).version == 4
        keys.append(key)
    assert keys[0] != keys[1]
    provisioned = [r for r in service.registrations(template="demo") if r["outcome"] == "provisioned"]
    assert sorted(r["idempotencyKey"] for r in provisioned) == sorted(keys)
