"""The registry's one SQLite connection, shared by its writer and its readers under one lock.

One connection (`check_same_thread=False`) guarded by a lock: the asyncio server calls the registry
from its loop and from worker threads, and tests read it from their own threads. The file survives
restarts; `":memory:"` gives a throwaway registry for tests.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from emulator.errors import ConfigError
from emulator.registry import schema


class Database:
    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self.lock = threading.RLock()
        try:
            # Autocommit mode: transactions are opened explicitly by transaction().
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open registry {self.path}: {exc}") from exc
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            # WAL + NORMAL: a commit survives a crash of the process (only not a power cut) and
            # costs no fsync, which would otherwise stall the emulator's event loop per request.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._db.execute("PRAGMA busy_timeout=5000")
            with self.transaction() as db:
                schema.migrate(db, self.path)
        except sqlite3.Error as exc:
            self._db.close()
            raise ConfigError(f"cannot open registry {self.path}: {exc}") from exc
        except ConfigError:
            self._db.close()
            raise

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection for several reads that must see one state (no transaction opened)."""
        with self.lock:
            yield self._db

    def rows(self, sql: str, *params: object) -> list[sqlite3.Row]:
        with self.lock:
            return self._db.execute(sql, params).fetchall()

    def close(self) -> None:
        with self.lock:
            self._db.close()
