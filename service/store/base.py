"""What every query group shares: run on the caller's transaction, or in one of its own."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


class Queries:
    def __init__(self, bind: Engine | Connection) -> None:
        self._bind = bind

    @property
    def dialect(self) -> str:
        return self._bind.dialect.name

    @contextmanager
    def _db(self) -> Iterator[Connection]:
        # Bound to a transaction (Store.transaction): every statement joins it. Otherwise each
        # call is a transaction of its own.
        if isinstance(self._bind, Connection):
            yield self._bind
        else:
            with self._bind.begin() as db:
                yield db
