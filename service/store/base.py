"""What every query group shares: run on the caller's transaction, or in one of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine

from service.store.engine import mark_write, writer_turn


class Queries:
    def __init__(self, bind: Engine | Connection) -> None:
        self._bind = bind

    @property
    def dialect(self) -> str:
        return self._bind.dialect.name

    @contextmanager
    def _db(self, *, write: bool = True) -> Iterator[Connection]:
        # Bound to a transaction (Store.transaction): every statement joins it. Otherwise each
        # call is a transaction of its own, which takes SQLite's write lock at once only if it
        # writes (engine.begin_transaction).
        if isinstance(self._bind, Connection):
            yield self._bind
        else:
            with begin_transaction(self._bind, write=write) as db:
                yield db


@contextmanager
def begin_transaction(engine: Engine, *, write: bool) -> Iterator[Connection]:
    if not write:
        with engine.connect() as connection, connection.begin():
            yield connection
        return
    with writer_turn(engine), engine.connect() as connection:
        mark_write(connection)
        with connection.begin():
            yield connection
