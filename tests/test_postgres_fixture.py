"""The database fixtures of tests/conftest.py: a real throwaway PostgreSQL cluster, and SQLite."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from postgres import PostgresServer
from repository import REPO_ROOT

THIS = Path(__file__).relative_to(REPO_ROOT).as_posix()

metadata = sa.MetaData()
things = sa.Table(
    "things",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(128), nullable=False, unique=True),
)


def _roundtrip(url: str, names: list[str]) -> list[str]:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            metadata.create_all(conn)
            conn.execute(things.insert(), [{"name": name} for name in names])
        with engine.connect() as conn:
            return list(conn.scalars(sa.select(things.c.name).order_by(things.c.id)))
    finally:
        engine.dispose()


def test_postgres_url_is_a_real_postgresql_15_database(postgres_url: str) -> None:
    assert postgres_url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    engine = sa.create_engine(postgres_url)
    try:
        assert engine.dialect.name == "postgresql"
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.dialect.server_version_info >= (15,)
            assert conn.scalar(sa.text("select current_database()")) == postgres_url.rsplit("/", 1)[1]
            assert conn.scalar(sa.text("show fsync")) == "off"
            assert conn.scalar(sa.text("show listen_addresses")) == "127.0.0.1"
    finally:
        engine.dispose()
    assert _roundtrip(postgres_url, ["a", "b"]) == ["a", "b"]


def test_postgres_url_is_fresh_for_every_test(postgres_url: str) -> None:
    # The test above created "things" in its own database; this one starts empty again.
    engine = sa.create_engine(postgres_url)
    try:
        assert sa.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()


def test_databases_of_one_server_are_isolated(postgres_server: PostgresServer) -> None:
    first, second = postgres_server.create_database(), postgres_server.create_database()
    assert first != second
    assert _roundtrip(first, ["only-in-first"]) == ["only-in-first"]
    assert _roundtrip(second, ["only-in-second"]) == ["only-in-second"]
    engine = sa.create_engine(second)
    try:
        with engine.connect() as conn:
            assert list(conn.scalars(sa.select(things.c.name))) == ["only-in-second"]
    finally:
        engine.dispose()
    for url in (first, second):
        postgres_server.drop_database(url.rsplit("/", 1)[1])


def test_drop_database_cuts_open_connections(postgres_server: PostgresServer) -> None:
    url = postgres_server.create_database()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
            postgres_server.drop_database(url.rsplit("/", 1)[1])
    except sa.exc.OperationalError:
        pass  # the server cut the connection: the point of WITH (FORCE)
    finally:
        engine.dispose()
    with pytest.raises(sa.exc.OperationalError):
        with sa.create_engine(url).connect():
            pass


def test_database_url_runs_on_both(database_url: str, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.params["database_url"]
    assert sa.make_url(database_url).get_backend_name() == backend
    assert _roundtrip(database_url, ["x", "y", "z"]) == ["x", "y", "z"]


# -- how the fixtures behave, seen from a separate pytest run ------------------------------------------


def _pytest(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    child_env = {k: v for k, v in os.environ.items() if k not in ("CI", "TEST_PG_BINDIR", "PYTEST_ADDOPTS")}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs", *args],
        cwd=REPO_ROOT,
        env={**child_env, **env},
        capture_output=True,
        text=True,
        timeout=110,
    )


def test_cluster_starts_once_and_only_when_asked() -> None:
    both = _pytest(
        "--setup-show",
        f"{THIS}::test_database_url_runs_on_both",
        f"{THIS}::test_postgres_url_is_fresh_for_every_test",
    )
    assert both.returncode == 0, both.stdout + both.stderr
    assert both.stdout.count("SETUP    S postgres_server") == 1, both.stdout
    sqlite_only = _pytest("--setup-show", f"{THIS}::test_database_url_runs_on_both[sqlite]")
    assert sqlite_only.returncode == 0, sqlite_only.stdout + sqlite_only.stderr
    assert "postgres_server" not in sqlite_only.stdout


@pytest.mark.parametrize("ci", ["", "true"])
def test_missing_binaries_skip_locally_and_fail_under_ci(ci: str, tmp_path: Path) -> None:
    run = _pytest(f"{THIS}::test_database_url_runs_on_both", CI=ci, TEST_PG_BINDIR=str(tmp_path))
    out = run.stdout + run.stderr
    assert "PostgreSQL 15 not installed (apt-get install postgresql)" in out, out
    if ci:
        assert run.returncode == 1, out
        assert "1 passed, 1 error" in out, out
        assert "CI=true, so the PostgreSQL tests fail instead of skipping" in out, out
    else:
        assert run.returncode == 0, out
        assert "1 passed, 1 skipped" in out, out
