"""Rate and quota, which an API key and a device CA (enrollment group) each have: requests counted
in fixed minute windows shared by every worker and host, and provisions taken from a quota.

`Limits` holds one owner table's statements, built once (building a statement costs more than
running it); `LimitQueries` runs them for the query group of that table.
"""

from __future__ import annotations

from functools import cache

from sqlalchemy import Connection, Table, bindparam, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from service.store.base import Queries


class Limits:
    def __init__(self, owners: Table, owner: str, windows: Table) -> None:
        self.owner, self.windows = owner, windows
        c = owners.c
        self.take = (
            update(owners)
            .where(
                c[owner] == bindparam("b_owner"),
                c.max_provisions.is_(None) | (c.provisions < c.max_provisions),
            )
            .values(provisions=c.provisions + 1)
        )
        self.give_back = (
            update(owners)
            .where(c[owner] == bindparam("b_owner"), c.provisions > 0)
            .values(provisions=c.provisions - 1)
        )
        self.forget_windows = windows.delete().where(
            windows.c[owner] == bindparam("b_owner"), windows.c.window < bindparam("b_window")
        )

    def count(self, dialect: str) -> Executable:
        """Add one request to the owner's window (atomic across hosts), returning the new count."""
        return _count(self.windows, self.owner, dialect)


@cache
def _count(windows: Table, owner: str, dialect: str) -> Executable:
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(windows)
        .values({owner: bindparam("b_owner"), "window": bindparam("b_window"), "requests": 1})
        .on_conflict_do_update(index_elements=[owner, "window"], set_={"requests": windows.c.requests + 1})
        .returning(windows.c.requests)
    )


class LimitQueries(Queries):
    """The quota and the rate count of the query group whose table is `limits`' owner table."""

    limits: Limits

    def _count_in_window(self, db: Connection, owner_id: str, window: int) -> int:
        """Count one request in the owner's minute window; on the first of a window, forget the
        owner's older ones. The new count."""
        arguments = {"b_owner": owner_id, "b_window": window}
        count = int(db.execute(self.limits.count(self.dialect), arguments).scalar_one())
        if count == 1:
            db.execute(self.limits.forget_windows, arguments)
        return count

    def take_provision(self, owner_id: str) -> bool:
        """Reserve one provision of the quota; False when it is used up (atomic)."""
        with self._db() as db:
            return db.execute(self.limits.take, {"b_owner": owner_id}).rowcount == 1

    def give_back_provision(self, owner_id: str) -> None:
        """Undo `take_provision` for a provision that did not happen."""
        with self._db() as db:
            db.execute(self.limits.give_back, {"b_owner": owner_id})
