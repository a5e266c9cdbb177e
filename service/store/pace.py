"""The account-wide pace in the shared store: one atomic UPDATE reserves one slot.

The pace (service.provisioning.pace) keeps the next free slot `next_at`. Reserving is a
conditional UPDATE that takes the slot `max(next_at, earliest)` and moves `next_at` one interval
past it, only when that slot is not later than `latest`; RETURNING says which slot it took. Two
reservations from any workers or hosts are ordered by the row lock, so no two take the same slot
and a refused one changes nothing. `CASE WHEN` instead of max()/greatest(), which SQLite and
PostgreSQL spell differently.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache

from sqlalchemy import Executable, Float, bindparam, case, select, update
from sqlalchemy.dialects import postgresql, sqlite

from service.store.base import Queries
from service.store.tables import aws_pace

_EARLIEST = bindparam("b_earliest", type_=Float(precision=53))
_SLOT = case((aws_pace.c.next_at > _EARLIEST, aws_pace.c.next_at), else_=_EARLIEST)
_RESERVE = (
    update(aws_pace)
    .where(aws_pace.c.name == bindparam("b_name"), _SLOT <= bindparam("b_latest", type_=Float(precision=53)))
    .values(next_at=_SLOT + bindparam("b_interval", type_=Float(precision=53)))
    .returning(aws_pace.c.next_at)
)
_NEXT_AT = select(aws_pace.c.next_at).where(aws_pace.c.name == bindparam("b_name"))


@cache
def _create(dialect: str) -> Executable:
    """The pace's row, taking the first slot, unless another process made it first."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(aws_pace)
        .values(name=bindparam("b_name"), next_at=bindparam("b_next_at"))
        .on_conflict_do_nothing()
        .returning(aws_pace.c.next_at)
    )


class PaceQueries(Queries):
    def reserve(self, name: str, interval: float, earliest: float, latest: float) -> tuple[bool, float]:
        """(True, slot) for a slot in [earliest, latest], taken; else (False, the first free slot)."""
        values = {"b_name": name, "b_earliest": earliest, "b_latest": latest, "b_interval": interval}
        with self._db() as db:
            # Once, unless the row was made by another process between the statements (only
            # while the pace is new): then once more.
            for _ in range(3):
                taken = db.execute(_RESERVE, values).scalar_one_or_none()
                if taken is not None:
                    return True, taken - interval
                next_at = db.execute(_NEXT_AT, {"b_name": name}).scalar_one_or_none()
                if next_at is None:  # the first reservation ever
                    if earliest > latest:
                        return False, earliest
                    made = db.execute(
                        _create(self.dialect), {"b_name": name, "b_next_at": earliest + interval}
                    ).scalar_one_or_none()
                    if made is not None:
                        return True, earliest
                elif max(next_at, earliest) > latest:
                    return False, max(next_at, earliest)
            return False, earliest


class StorePace:
    """`service.provisioning.pace.Pace` on the store: `rate` per second for every host (each
    host paces by its own setting: give them all the same). `queries` is called on each
    reservation, so a store that is down at start fails the requests, not the worker."""

    def __init__(self, queries: Callable[[], PaceQueries], rate: float, name: str = "aws-iot") -> None:
        self._queries = queries
        self._name = name
        self.interval = 1.0 / rate

    def reserve(self, earliest: float, latest: float) -> tuple[bool, float]:
        return self._queries().reserve(self._name, self.interval, earliest, latest)
