"""API keys: issued, looked up by id, counted, limited and revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from service.store.base import Queries
from service.store.tables import api_keys, rate_windows


@dataclass(frozen=True)
class KeyRecord:
    key_id: str
    secret_sha256: str
    name: str
    role: str
    scope: dict[str, Any]
    max_provisions: int | None
    rate_per_minute: int | None
    provisions: int
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def __repr__(self) -> str:  # the hash is not a secret, but it has no business in a log
        return f"KeyRecord(key_id={self.key_id!r}, role={self.role!r})"


# Built once: building a statement costs more than running it (bench: docs/gate.md).
_GET = select(api_keys).where(api_keys.c.key_id == bindparam("b_key_id"))
_TAKE = (
    update(api_keys)
    .where(
        api_keys.c.key_id == bindparam("b_key_id"),
        api_keys.c.max_provisions.is_(None) | (api_keys.c.provisions < api_keys.c.max_provisions),
    )
    .values(provisions=api_keys.c.provisions + 1)
)
_GIVE_BACK = (
    update(api_keys)
    .where(api_keys.c.key_id == bindparam("b_key_id"), api_keys.c.provisions > 0)
    .values(provisions=api_keys.c.provisions - 1)
)
_TOUCH = (
    update(api_keys).where(api_keys.c.key_id == bindparam("b_key_id")).values(last_used_at=bindparam("b_at"))
)
_FORGET_WINDOWS = rate_windows.delete().where(
    rate_windows.c.key_id == bindparam("b_key_id"), rate_windows.c.window < bindparam("b_window")
)


@cache
def _count(dialect: str) -> Executable:
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return (
        insert_(rate_windows)
        .values(key_id=bindparam("b_key_id"), window=bindparam("b_window"), requests=1)
        .on_conflict_do_update(
            index_elements=["key_id", "window"], set_={"requests": rate_windows.c.requests + 1}
        )
        .returning(rate_windows.c.requests)
    )


class KeyQueries(Queries):
    def insert(self, record: KeyRecord) -> None:
        with self._db() as db:
            db.execute(insert(api_keys).values(**record.__dict__))

    def get(self, key_id: str) -> KeyRecord | None:
        with self._db(write=False) as db:
            row = db.execute(_GET, {"b_key_id": key_id}).mappings().first()
        return KeyRecord(**row) if row else None

    def list(self) -> list[KeyRecord]:
        with self._db(write=False) as db:
            rows = db.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
        return [KeyRecord(**row) for row in rows]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self._db() as db:
            done = db.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return done.rowcount == 1

    def count_request(self, key_id: str, window: int, at: datetime) -> int:
        """Count one request in the key's minute window (atomic across hosts); the new count.

        The key's last use is written once per window, not per request: minute precision is
        what an operator reads, and it spares a write per provision.
        """
        with self._db() as db:
            count = int(
                db.execute(_count(self.dialect), {"b_key_id": key_id, "b_window": window}).scalar_one()
            )
            if count == 1:  # a new window: note the use, forget the key's old windows
                db.execute(_TOUCH, {"b_key_id": key_id, "b_at": at})
                db.execute(_FORGET_WINDOWS, {"b_key_id": key_id, "b_window": window})
        return count

    def take_provision(self, key_id: str) -> bool:
        """Reserve one provision of the key's quota; False when it is used up (atomic)."""
        with self._db() as db:
            return db.execute(_TAKE, {"b_key_id": key_id}).rowcount == 1

    def give_back_provision(self, key_id: str) -> None:
        """Undo `take_provision` for a provision that did not happen."""
        with self._db() as db:
            db.execute(_GIVE_BACK, {"b_key_id": key_id})

    def touch(self, key_id: str, at: datetime) -> None:
        with self._db() as db:
            db.execute(_TOUCH, {"b_key_id": key_id, "b_at": at})

    def count(self) -> int:
        with self._db(write=False) as db:
            return int(db.execute(select(func.count()).select_from(api_keys)).scalar_one())
