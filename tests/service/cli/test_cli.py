"""The operator's CLI, `python -m service <command>`, on a real store.

Each test has its own SQLite file (or PostgreSQL database). Subprocess runs prove what an operator
gets (exit status, stdout, stderr, no traceback); click's CliRunner runs the same root command
in-process where many runs would be slow. The results are checked in the store itself.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from operator_cli import cli_env, run

from service.callers import keys
from service.callers.views import REGISTRATION_FIELDS
from service.cli.root import root
from service.errors import Unauthorized
from service.store import Registration, Store

UNREACHABLE_PG = "postgresql+psycopg://operator:hunter2-secret@127.0.0.1:1/provisioner"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'x.db'}"


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    opened = Store.open(url)
    yield opened
    opened.close()


@pytest.fixture
def cli(url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """cli(*args, stdin=None) -> click Result of the root command, in this process."""
    for name in [n for n in os.environ if n.startswith(("PROVISIONER_", "AWS_"))]:
        monkeypatch.delenv(name)
    for name, value in cli_env(url).items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    def invoke(*args: str, stdin: str | None = None) -> Result:
        return runner.invoke(root, list(args), input=stdin, catch_exceptions=False)

    return invoke


def record(at: datetime, request_id: str, outcome: str, **fields: Any) -> Registration:
    status = {"provisioned": 201, "refused": 403, "failed": 504, "replayed": 201}[outcome]
    return Registration(
        at=at, request_id=request_id, outcome=outcome, http_status=status, duration_ms=12.5, **fields
    )


# --- the entry point -----------------------------------------------------------------------------


def test_python_m_service_help_lists_the_commands(url: str) -> None:
    done = run(url, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("keys", "enrollments", "audit", "db"):
        assert f"\n  {command} " in done.stdout
    assert "runs the server under gunicorn" in done.stdout


def test_python_m_service_without_a_command_still_hands_its_options_to_gunicorn(url: str) -> None:
    done = run(url, "--check-config")  # gunicorn's: load the app and the config, then exit
    assert done.returncode == 0, done.stderr


# --- keys ----------------------------------------------------------------------------------------


def test_keys_create_quiet_prints_only_a_token_that_authenticates(url: str, store: Store) -> None:
    options = "--quiet --template demo --csr-only --rate 30 --expires 30d".split()
    done = run(url, "keys", "create", *options, "--name", "line 3", "--rule", "SerialNumber=^SN-[0-9]+$")
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("iotp_k") and "\n" not in token
    caller = keys.authenticate(f"Bearer {token}", (), store, datetime.now(UTC))
    assert caller.role == "provision" and caller.rate_per_minute == 30
    assert caller.scope.templates == ("demo",)
    assert caller.scope.parameter_rules == {"SerialNumber": "^SN-[0-9]+$"}
    assert caller.scope.server_keys is False


def test_keys_create_shows_the_key_once_with_a_warning(cli: Any, store: Store) -> None:
    result = cli("keys", "create", "--role", "admin", "--name", "ops")
    assert result.exit_code == 0
    token = next(word for word in result.stdout.split() if word.startswith("iotp_"))
    assert "will not be shown again" in result.stdout
    assert keys.authenticate(f"Bearer {token}", (), store, datetime.now(UTC)).is_admin
    secret = token.split("_", 2)[2]
    for command in (["keys", "list"], ["keys", "list", "--json"], ["keys", "show", token.split("_")[1]]):
        shown = cli(*command)
        assert shown.exit_code == 0 and secret not in shown.output


def test_keys_list_shows_usage_limits_and_state(cli: Any, store: Store) -> None:
    token = cli("keys", "create", "-q", "--name", "flasher", "--max-provisions", "5", "--rate", "60").stdout
    key_id = token.strip().split("_")[1]
    used_at = datetime(2026, 12, 3, 12, 0, 5, tzinfo=UTC)
    assert store.keys.take_provision(key_id) and store.keys.take_provision(key_id)
    store.keys.touch(key_id, used_at)

    table = cli("keys", "list").stdout.splitlines()
    assert table[0].split() == [
        "ID",
        "NAME",
        "ROLE",
        "STATE",
        "PROVISIONS",
        "RATE",
        "LAST",
        "USED",
        "EXPIRES",
    ]
    assert table[1].split() == [
        key_id,
        "flasher",
        "provision",
        "active",
        "2/5",
        "60/min",
        "2026-12-03",
        "12:00:05Z",
        "-",
    ]
    [listed] = json.loads(cli("keys", "list", "--json").stdout)
    assert listed["provisions"] == 2 and listed["maxProvisions"] == 5
    assert listed["lastUsedAt"] == "2026-12-03T12:00:05Z"


def test_keys_revoke_refuses_the_key_from_then_on(url: str, store: Store) -> None:
    token = run(url, "keys", "create", "-q").stdout.strip()
    key_id = token.split("_")[1]

    done = run(url, "keys", "revoke", key_id)
    assert done.returncode == 0 and f"Revoked API key {key_id}" in done.stdout
    with pytest.raises(Unauthorized):
        keys.authenticate(f"Bearer {token}", (), store, datetime.now(UTC))
    assert json.loads(run(url, "keys", "show", key_id, "--json").stdout)["state"] == "revoked"
    again = run(url, "keys", "revoke", token)  # the whole (leaked) key is accepted too
    assert again.returncode == 0 and "already revoked" in again.stdout
    assert token.split("_", 2)[2] not in again.stdout + again.stderr


def test_keys_show_and_revoke_of_an_unknown_id_exit_1(cli: Any) -> None:
    for command in ("show", "revoke"):
        result = cli("keys", command, "k000000000000")
        assert result.exit_code == 1
        assert "no API key with id 'k000000000000'" in result.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--rule", "SerialNumber"], "is not NAME=REGEX"),
        (["--rule", "SerialNumber=("], "not a regular expression"),
        (["--template", "no spaces"], "is not a template name"),
        (["--expires", "soon"], "neither an ISO 8601 time"),
        (["--expires", "2020-01-01T00:00:00Z"], "is in the past"),
        (["--role", "root"], "'root' is not one of"),
        (["--max-provisions", "0"], "--max-provisions"),
    ],
)
def test_keys_create_refuses_bad_input_with_exit_2(
    cli: Any, store: Store, args: list[str], message: str
) -> None:
    result = cli("keys", "create", *args)
    assert result.exit_code == 2 and message in result.stderr
    assert store.keys.count() == 0


# --- enrollments ---------------------------------------------------------------------------------


def test_enrollments_import_with_a_bad_line_names_it_and_imports_nothing(
    url: str, store: Store, tmp_path: Path
) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text("SerialNumber,enabled\nSN-1,true\nSN-2,maybe\n,true\nSN-4,false\n")
    done = run(url, "enrollments", "import", str(devices), "--template", "demo")
    assert done.returncode == 1
    assert f"{devices}: line 3: enabled must be true or false, got 'maybe'" in done.stderr
    assert f"{devices}: line 4: the value is empty" in done.stderr
    assert "Nothing was imported." in done.stderr and "Traceback" not in done.stderr
    assert store.enrollments.count() == 0


def test_enrollments_import_adds_then_updates_every_line(url: str, store: Store, tmp_path: Path) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text("\ufeffDeviceId,enabled,reprovision\nD-1,true,once\nD-2,false,allow\n")
    options = ("--template", "demo", "--parameter", "DeviceId")
    first = run(url, "enrollments", "import", str(devices), *options)
    assert (first.returncode, first.stdout) == (0, "added 2, updated 0\n")
    again = run(url, "enrollments", "import", "-", *options, stdin=devices.read_text())  # from stdin
    assert again.stdout == "added 0, updated 2\n"
    d2 = store.enrollments.get("demo", "DeviceId", "D-2")
    assert d2 is not None and not d2.enabled and d2.reprovision == "allow"


def test_enrollments_add_disable_enable_and_list(cli: Any, store: Store) -> None:
    assert cli("enrollments", "add", "SN-1", "--template", "demo").exit_code == 0
    added = cli("enrollments", "add", "SN-2", "--template", "other", "--disabled", "--reprovision", "allow")
    assert "added SerialNumber=SN-2 for template other (disabled, reprovision allow)" in added.stdout
    assert cli("enrollments", "disable", "SN-1", "--template", "demo").exit_code == 0
    sn1 = store.enrollments.get("demo", "SerialNumber", "SN-1")
    assert sn1 is not None and not sn1.enabled
    assert cli("enrollments", "enable", "SN-1", "--template", "demo").exit_code == 0
    sn1 = store.enrollments.get("demo", "SerialNumber", "SN-1")
    assert sn1 is not None and sn1.enabled

    listed = json.loads(cli("enrollments", "list", "--template", "demo", "--json").stdout)
    assert [(e["value"], e["enabled"]) for e in listed] == [("SN-1", True)]
    table = cli("enrollments", "list").stdout.splitlines()
    assert len(table) == 3 and table[2].split()[:5] == ["other", "SerialNumber", "SN-2", "no", "allow"]

    missing = cli("enrollments", "enable", "SN-404", "--template", "demo")
    assert missing.exit_code == 1 and "has no enrollment SerialNumber=SN-404" in missing.stderr
    empty = cli("enrollments", "add", "", "--template", "demo")
    assert empty.exit_code == 2 and "the value is empty" in empty.stderr


# --- audit ---------------------------------------------------------------------------------------


def test_audit_json_and_csv_are_newest_first_and_filtered(cli: Any, store: Store) -> None:
    now = datetime.now(UTC)
    store.registrations.insert(record(now - timedelta(hours=3), "r-old", "provisioned", key_id="k1"))
    store.registrations.insert(
        record(
            now - timedelta(minutes=30),
            "r-refused",
            "refused",
            key_id="k2",
            template="demo",
            parameters={"SerialNumber": "SN-1", "Note": "a,b"},
            problem="forbidden",
        )
    )
    store.registrations.insert(record(now, "r-new", "provisioned", key_id="k1", thing_name="demo-SN-2"))

    everything = json.loads(cli("audit", "--format", "json").stdout)
    assert [r["requestId"] for r in everything] == ["r-new", "r-refused", "r-old"]
    recent = json.loads(cli("audit", "--since", "1h", "--key", "k1", "--format", "json").stdout)
    assert [r["requestId"] for r in recent] == ["r-new"]
    assert json.loads(cli("audit", "--limit", "1", "--format", "json").stdout)[0]["requestId"] == "r-new"

    done = cli("audit", "--outcome", "refused", "--format", "csv")
    rows = list(csv.reader(io.StringIO(done.stdout)))
    assert tuple(rows[0]) == REGISTRATION_FIELDS
    [row] = [dict(zip(rows[0], values, strict=True)) for values in rows[1:]]
    assert row["requestId"] == "r-refused" and row["problem"] == "forbidden" and row["thingName"] == ""
    assert json.loads(row["parameters"]) == {"SerialNumber": "SN-1", "Note": "a,b"}


def test_audit_csv_cells_that_a_spreadsheet_would_run_start_with_an_apostrophe(
    url: str, serve: Any, unreachable_settings: Any
) -> None:
    # Any key holder picks their Idempotency-Key, and it lands in the auditor's spreadsheet.
    api = serve(unreachable_settings(PROVISIONER_DATABASE_URL=url))
    created = api.post("/admin/keys", json={"name": "@SUM(1+1)", "templates": ["other"]})
    assert created.status_code == 201, created.text
    payloads = ["=cmd|'/Ccalc'!A0", "+1+1", "-1+1", "@SUM(A1)"]
    for payload in payloads:
        refused = api.post(
            "/provision",
            json={"templateName": "demo"},
            key=created.json()["apiKey"],
            headers={"Idempotency-Key": payload},
        )
        assert refused.status_code == 403, refused.text

    done = run(url, "audit", "--format", "csv")
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert sorted(row["idempotencyKey"] for row in rows) == sorted("'" + p for p in payloads)
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_audit_table_and_limit_0_reads_every_page(cli: Any, store: Store) -> None:
    now = datetime.now(UTC)
    for number in range(1205):  # more than one page of the store's queries
        store.registrations.insert(record(now, f"r-{number}", "provisioned"))
    assert len(json.loads(cli("audit", "--limit", "0", "--format", "json").stdout)) == 1205
    table = cli("audit").stdout.splitlines()
    assert len(table) == 101 and table[0].split()[:3] == ["AT", "OUTCOME", "STATUS"]
    assert cli("audit", "--template", "none").stdout == "No registration records match.\n"
    assert cli("audit", "--format", "json", "--template", "none").stdout == "[\n]\n"


def test_audit_prune_removes_records_past_the_retention(cli: Any, store: Store) -> None:
    now = datetime.now(UTC)
    store.registrations.insert(record(now - timedelta(days=91), "r-old", "provisioned"))
    store.registrations.insert(record(now - timedelta(days=1), "r-kept", "provisioned"))
    result = cli("audit", "prune")
    assert result.exit_code == 0 and result.stdout.startswith("removed 1 record(s)")
    assert [r["requestId"] for r in json.loads(cli("audit", "--format", "json").stdout)] == ["r-kept"]


# --- db ------------------------------------------------------------------------------------------


def test_db_status_then_upgrade_then_status(url: str) -> None:
    before = run(url, "db", "status")
    assert before.returncode == 0
    assert "revision: empty" in before.stdout and "run python -m service db upgrade" in before.stdout
    upgraded = run(url, "db", "upgrade")
    assert upgraded.returncode == 0 and upgraded.stdout.startswith("upgraded from empty to revision ")
    after = run(url, "db", "status")
    assert "backend:  sqlite" in after.stdout and "state:    up to date" in after.stdout
    assert run(url, "db", "upgrade").stdout.startswith("already at revision ")


# --- errors --------------------------------------------------------------------------------------


def test_an_unreachable_database_is_one_line_exit_1_and_never_shows_the_url() -> None:
    for args in (["keys", "list"], ["db", "status"]):
        done = run(UNREACHABLE_PG, *args)
        assert done.returncode == 1
        assert "Traceback" not in done.stderr
        assert "hunter2" not in done.stdout + done.stderr and "127.0.0.1:1" not in done.stdout + done.stderr
    assert (
        "Error: the database is unavailable (OperationalError)" in run(UNREACHABLE_PG, "keys", "list").stderr
    )


def test_an_unusable_database_url_is_reported_without_its_text() -> None:
    done = run("nosuchdriver://operator:hunter2-secret@db/provisioner", "keys", "list")
    assert done.returncode == 1 and "Traceback" not in done.stderr and "hunter2" not in done.stderr
    assert "PROVISIONER_DATABASE_URL is not a database URL" in done.stderr


def test_settings_problems_and_a_store_turned_off_exit_2(url: str) -> None:
    off = run("off", "keys", "list")
    assert off.returncode == 2 and "PROVISIONER_DATABASE_URL=off" in off.stderr
    done = run(url, "keys", "list", PROVISIONER_API_KEYS="short")
    assert done.returncode == 2 and "PROVISIONER_API_KEYS key #1 has 5 characters" in done.stderr
    assert "Traceback" not in done.stderr


# --- PostgreSQL ----------------------------------------------------------------------------------


def test_keys_list_on_postgresql(postgres_url: str) -> None:
    token = run(postgres_url, "keys", "create", "-q", "--name", "pg-key").stdout.strip()
    key_id = token.split("_")[1]
    done = run(postgres_url, "keys", "list")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1].split()[:4] == [key_id, "pg-key", "provision", "active"]
    status = run(postgres_url, "db", "status")
    assert "backend:  postgresql" in status.stdout and "up to date" in status.stdout
