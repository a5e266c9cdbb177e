"""The database engine of one process, and migrations to the current schema.

Engines and their pools are per process, made after gunicorn's fork (like the MQTT pool).
SQLite is the embedded default: WAL so readers never wait for the writer, a busy timeout so
several workers take turns writing, and foreign keys on. PostgreSQL serves several hosts.
"""

from __future__ import annotations

import fcntl
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.engine import ExceptionContext, make_url

from service.errors import StoreConflict, StoreUnavailable

log = logging.getLogger("service.store")

MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 10_000
# Any fixed number: the advisory lock PostgreSQL holds while one process migrates.
_PG_MIGRATION_LOCK = 727_110_001


def make_engine(url: str) -> Engine:
    try:
        engine = _engine(url)
    except (exc.ArgumentError, exc.NoSuchModuleError):
        # The message would quote the URL, which may hold a password.
        raise StoreUnavailable(
            "PROVISIONER_DATABASE_URL is not a database URL this service can use "
            "(sqlite:///path or postgresql+psycopg://user@host/db)"
        ) from None
    event.listen(engine, "handle_error", _unavailable)
    return engine


# PostgreSQL's SQLSTATEs for a transaction it undid on its own: a deadlock, a serialization failure.
_UNDONE = {"40P01", "40001"}


def _unavailable(context: ExceptionContext) -> None:
    # The one place a driver failure becomes a service error. Constraint violations stay
    # SQLAlchemy's: the queries that expect them handle them. The message names no URL.
    if getattr(context.original_exception, "sqlstate", None) in _UNDONE:
        raise StoreConflict(
            "the database undid this transaction (a deadlock with another, or a serialization "
            "failure); retry",
            retry_after=1,
        ) from None
    if isinstance(context.sqlalchemy_exception, exc.OperationalError | exc.InterfaceError):
        raise StoreUnavailable(
            f"the database is unavailable ({type(context.original_exception).__name__})", retry_after=2
        ) from None


def _engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            # Key hashes, scopes, caller addresses and device parameters: for this user only.
            # SQLite gives its -wal and -shm files the database file's mode.
            Path(parsed.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(parsed.database, os.O_CREAT | os.O_RDWR, 0o600))
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        # BEGIN is ours: a transaction that writes takes the write lock at BEGIN (IMMEDIATE), so
        # two workers' read-then-write transactions queue instead of failing to upgrade; one
        # that only reads takes none, so readers never wait for a writer (WAL). The dialect's
        # own BEGIN, not a "begin" event: an engine with connection events runs their dispatch
        # around every statement (about a fifth of the store's CPU per provision, py-spy).
        engine.dialect.do_begin = _sqlite_begin  # type: ignore[method-assign]
        _WRITERS[engine] = threading.Lock()
        return engine
    # No pre-ping (a round trip per transaction): a dropped connection fails one transaction
    # with StoreUnavailable and SQLAlchemy discards the pool's stale connections.
    return create_engine(url, pool_size=5, max_overflow=10, pool_recycle=1800)


# One writing transaction at a time per process on SQLite, waiting on a lock. Without it, every
# thread of a worker that wants to write waits in SQLite's busy handler, which polls by sleeping
# 1, 2, 5, ... up to 100 ms between tries: at 32 callers the write lock, free again within a
# millisecond, found its waiters asleep, and p99 grew to 5-10 x p50 (docs/benchmarks.md, 2026-12-06). A
# thread waiting here wakes as soon as the lock is released; only the process's one writer meets
# the other processes', and it asks SQLite again every 0.2-2 ms (_begin_immediate). Bounded like
# the busy timeout: past it, the store is unavailable (503), as when the busy timeout runs out.
_WRITERS: weakref.WeakKeyDictionary[Engine, threading.Lock] = weakref.WeakKeyDictionary()


@contextmanager
def writer_turn(engine: Engine) -> Iterator[None]:
    """This process's turn to write (SQLite); no wait on PostgreSQL, which locks rows."""
    lock = _WRITERS.get(engine)
    if lock is None:
        yield
        return
    if not lock.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
        raise StoreUnavailable("the database is unavailable (its write lock is held too long)", retry_after=2)
    try:
        yield
    finally:
        lock.release()


def mark_write(connection: Connection) -> None:
    """The transaction `connection` begins next writes (base.begin_transaction)."""
    connection.connection.info["write"] = True


def _sqlite_begin(dbapi_connection: Any) -> None:
    # A driver error here becomes StoreUnavailable like any other (SQLAlchemy's begin handles it).
    if dbapi_connection.info.pop("write", False):
        _begin_immediate(dbapi_connection)
    else:
        dbapi_connection.execute("BEGIN")


def _while_locked(attempt: Callable[[], None], first: float, most: float) -> None:
    """Run `attempt` until SQLite stops answering "database is locked", sleeping `first` seconds,
    then twice as long each time up to `most`, within the busy timeout (then the error stands)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = first
    while True:
        try:
            attempt()
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, most)


def _begin_immediate(dbapi_connection: Any) -> None:
    """Take SQLite's write lock, asking again every 0.2-2 ms while another process holds it.

    SQLite's own busy handler sleeps 1, 2, 5, ... up to 100 ms between tries: the worker whose
    writer is asleep there loses the lock, free again within a millisecond, to the other worker's
    writers one after the other (writer_turn wakes those at once), and at 32 callers p99 was still
    3-6 x p50 (docs/benchmarks.md, second pass). So the busy handler is off for this one statement
    and the writer polls on a short leash instead, within the same busy timeout (then 503, as
    before). Every other statement keeps the busy timeout."""
    try:
        dbapi_connection.execute("PRAGMA busy_timeout=0")
        _while_locked(lambda: dbapi_connection.execute("BEGIN IMMEDIATE"), first=0.0002, most=0.002)
    finally:
        dbapi_connection.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")


def _sqlite_pragmas(dbapi_connection: Any, record: Any) -> None:
    dbapi_connection.isolation_level = None  # BEGIN is ours (see make_engine)
    cursor = dbapi_connection.cursor()
    _wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _wal(cursor: Any) -> None:
    """Put the database in WAL mode (kept in the file: later connections find it so).

    Turning a new file to WAL needs its exclusive lock, and SQLite answers "database is locked"
    at once, without waiting through the busy handler, while other workers open the same new file
    (several replicas or workers starting together): wait and retry within the busy timeout."""

    def turn_to_wal() -> None:
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")

    _while_locked(turn_to_wal, first=0.005, most=0.1)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; one process at a time, a no-op when current."""
    if current_revision(engine) == head_revision():
        return
    with _migration_lock(engine), engine.connect() as connection:
        config = _alembic_config()
        config.attributes["connection"] = connection
        before = MigrationContext.configure(connection).get_current_revision()
        if before == head_revision():
            return  # another process (a replica started at the same time) migrated while we waited
        command.upgrade(config, "head")
        connection.commit()
        log.info("store: schema migrated from %s to %s", before or "empty", head_revision())


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(_alembic_config()).get_current_head()


def describe(engine: Engine) -> dict[str, Any]:
    """What /readyz says of the store: reachable, and at the current schema."""
    try:
        revision = current_revision(engine)
    except Exception as error:  # noqa: BLE001 - any driver error means "not ready"
        return {"ready": False, "error": f"cannot reach the database ({type(error).__name__})"}
    current = revision == head_revision()
    return {"ready": current, "backend": engine.dialect.name, "schema": revision or "empty"}


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


class _migration_lock:
    """PostgreSQL: an advisory lock; SQLite: a lock file beside the database."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Any = None
        self._file: Any = None

    def __enter__(self) -> None:
        if self._engine.dialect.name == "postgresql":
            self._connection = self._engine.connect()
            self._connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
        elif self._engine.url.database and self._engine.url.database != ":memory:":
            self._file = open(f"{self._engine.url.database}.migrate.lock", "w")  # noqa: SIM115
            fcntl.flock(self._file, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        if self._connection is not None:
            self._connection.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _PG_MIGRATION_LOCK})
            self._connection.close()
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
