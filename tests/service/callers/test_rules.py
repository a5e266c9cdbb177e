"""Parameter rules run in linear time (RE2), outside the store's transaction: rules that make a
backtracking engine take exponential time answer at once while other callers are served; rules
RE2 cannot run are refused at key creation, and stored ones are migrated or named."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from click.testing import CliRunner
from device_keys import make_csr
from sqlalchemy import create_engine

from service.callers import keys
from service.callers.model import KeySpec, Scope
from service.cli.root import root
from service.errors import InvalidInput
from service.store import KeyRecord, Store
from service.store.engine import MIGRATIONS

CATASTROPHIC = {
    # rule: a 2,000-character value that does not match, found only after every way was tried
    "^(a+)+$": "a" * 1999 + "!",
    "^([A-Z0-9]+-?)+$": "SN" + "A1" * 999 + "!",
}
BOUND_SECONDS = 2.0  # not a timing target: "does not hang" (a backtracking engine takes minutes)


def issue_key(api: Any, **spec: Any) -> str:
    response = api.post("/admin/keys", json=spec)
    assert response.status_code == 201, response.text
    return str(response.json()["apiKey"])


def provision(api: Any, key: str, serial: str, **extra: Any) -> Any:
    body = {"templateName": "demo", "parameters": {"SerialNumber": serial}, **extra}
    return api.post("/provision", json=body, key=key)


def test_catastrophic_rules_answer_at_once_while_others_are_served(
    start_service: Any, database_url: str
) -> None:
    api = start_service(PROVISIONER_DATABASE_URL=database_url, PROVISIONER_POOL_SIZE="4")
    ruled = {rule: issue_key(api, parameterRules={"SerialNumber": rule}) for rule in CATASTROPHIC}
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()

    def call(kind: str, key: str, serial: str, **extra: Any) -> None:
        started = time.monotonic()
        response = provision(api, key, serial, **extra)
        with lock:
            results.append((kind, response.status_code, time.monotonic() - started))
        if kind == "rule":
            assert response.json()["rule"] == "parameter-rule", response.text
            assert response.json()["parameter"] == "SerialNumber"

    threads = []
    for round_ in range(3):
        for rule, value in CATASTROPHIC.items():
            threads.append(threading.Thread(target=call, args=("rule", ruled[rule], value)))
        for index in range(2):
            serial = f"OK-{round_}-{index}"
            threads.append(threading.Thread(target=call, args=("other", api.key, serial), kwargs={}))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == len(threads)
    assert sorted({(kind, status) for kind, status, _ in results}) == [("other", 201), ("rule", 403)]
    slowest = max(seconds for kind, _, seconds in results if kind == "rule")
    assert slowest < BOUND_SECONDS, results


def test_a_value_that_matches_a_catastrophic_rule_provisions(start_service: Any, database_url: str) -> None:
    api = start_service(PROVISIONER_DATABASE_URL=database_url)
    key = issue_key(api, parameterRules={"SerialNumber": "^([A-Z0-9]+-?)+$"}, serverKeys=False)
    assert provision(api, key, "SN-0001-B", csr=make_csr()[1]).status_code == 201
    assert provision(api, key, "SN-0001-b", csr=make_csr()[1]).status_code == 403


@pytest.mark.parametrize(
    ("rule", "why"),
    [
        ("^(?=SN-)SN-[0-9]+$", "lookahead"),
        ("^(?<!X)SN-[0-9]+$", "lookbehind"),
        ("^(SN)-\\1$", "backreferences"),
        ("^SN-[0-9]++$", "possessive"),
        ("^SN-[0-9]{6}\\Z", "\\z, not \\Z"),
        ("^SN-(", "missing )"),
        ("x" * 501, "longer than 500"),
    ],
)
def test_a_rule_re2_cannot_run_is_refused_at_creation_saying_why(
    start_service: Any, database_url: str, rule: str, why: str
) -> None:
    api = start_service(PROVISIONER_DATABASE_URL=database_url)
    response = api.post("/admin/keys", json={"parameterRules": {"SerialNumber": rule}})
    assert response.status_code == 422, response.text
    (message,) = response.json()["errors"]["parameterRules"]
    assert "'SerialNumber'" in message and why in message
    assert api.get("/admin/keys").json()["items"] == []
    # The operator's CLI issues keys through the same check.
    store = Store.open(database_url)
    try:
        with pytest.raises(InvalidInput) as refused:
            keys.issue(store, KeySpec(scope=Scope(parameter_rules={"SerialNumber": rule})), datetime.now(UTC))
        assert refused.value.status == 422 and why in refused.value.detail
        assert list(refused.value.extra["errors"]) == ["parameterRules.SerialNumber"]
    finally:
        store.close()


def _store_at_revision(url: str, revision: str) -> None:
    engine = create_engine(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.connect() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
        connection.commit()
    engine.dispose()


def _stored_key(store: Store, rule: str) -> str:
    """A key as an older version stored it (no check of its rule); its token."""
    key_id, secret = "k" + secrets.token_hex(6), secrets.token_urlsafe(32)
    store.keys.insert(
        KeyRecord(
            key_id=key_id,
            secret_sha256=hashlib.sha256(secret.encode()).hexdigest(),
            name="from before RE2",
            role="provision",
            scope=Scope(parameter_rules={"SerialNumber": rule}).to_json(),
            max_provisions=None,
            rate_per_minute=None,
            provisions=0,
            created_at=datetime.now(UTC),
            expires_at=None,
            revoked_at=None,
            last_used_at=None,
        )
    )
    return f"iotp_{key_id}_{secret}"


def test_stored_rules_are_migrated_or_named(
    start_service: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    _store_at_revision(database_url, "0003")
    old = Store(create_engine(database_url))
    ending = _stored_key(old, "^SN-[0-9]{6}\\Z")
    escaped = _stored_key(old, "^SN\\\\Z-[0-9]+$")  # an escaped backslash before Z is not \Z
    lookahead = _stored_key(old, "^(?=SN-)SN-[0-9]+$")
    old.close()
    caplog.set_level(logging.WARNING, logger="service")

    api = start_service(PROVISIONER_DATABASE_URL=database_url)  # migrates to the head
    rules = {
        k["keyId"]: k["scope"]["parameterRules"]["SerialNumber"]
        for k in api.get("/admin/keys").json()["items"]
    }
    assert rules[ending.split("_")[1]] == "^SN-[0-9]{6}\\z"
    assert rules[escaped.split("_")[1]] == "^SN\\\\Z-[0-9]+$"
    assert rules[lookahead.split("_")[1]] == "^(?=SN-)SN-[0-9]+$"
    named = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert len(named) == 1 and lookahead.split("_")[1] in named[0] and "lookahead" in named[0], named

    assert provision(api, ending, "SN-123456", csr=make_csr()[1]).status_code == 201
    assert provision(api, ending, "SN-1234567", csr=make_csr()[1]).status_code == 403
    refused = provision(api, lookahead, "SN-123456", csr=make_csr()[1])
    assert refused.status_code == 403 and refused.json()["parameter"] == "SerialNumber"
    assert "lookahead" in refused.json()["detail"] and "replace the key" in refused.json()["detail"]


def test_the_operators_cli_checks_rules_as_the_gate_runs_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    for name in [n for n in os.environ if n.startswith(("PROVISIONER_", "AWS_"))]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROVISIONER_DATABASE_URL", url)
    monkeypatch.setenv("PROVISIONER_IOT_ENDPOINT", "mqtt://127.0.0.1:1")
    monkeypatch.setenv("PROVISIONER_API_KEYS", "bootstrap-key-for-rule-tests")
    runner = CliRunner()
    refused = runner.invoke(root, ["keys", "create", "--rule", "SerialNumber=^(?=SN)SN-[0-9]+$"])
    assert refused.exit_code == 2 and "lookahead" in refused.stderr
    # RE2's end of text, which Python's re (before 3.14) does not know.
    created = runner.invoke(root, ["keys", "create", "--quiet", "--rule", "SerialNumber=^SN-[0-9]{6}\\z"])
    assert created.exit_code == 0, created.stderr
    store = Store.open(url)
    try:
        (record,) = store.keys.list()
        assert record.scope["parameterRules"] == {"SerialNumber": "^SN-[0-9]{6}\\z"}
    finally:
        store.close()
