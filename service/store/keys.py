"""API keys: issued, looked up by id, counted, limited and revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, func, insert, select, update

from service.store.limits import LimitQueries, Limits
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
_TOUCH = (
    update(api_keys).where(api_keys.c.key_id == bindparam("b_key_id")).values(last_used_at=bindparam("b_at"))
)


class KeyQueries(LimitQueries):
    limits = Limits(api_keys, "key_id", rate_windows)

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
            count = self._count_in_window(db, key_id, window)
            if count == 1:  # a new window: note the use
                db.execute(_TOUCH, {"b_key_id": key_id, "b_at": at})
        return count

    def touch(self, key_id: str, at: datetime) -> None:
        with self._db() as db:
            db.execute(_TOUCH, {"b_key_id": key_id, "b_at": at})

    def count(self) -> int:
        with self._db(write=False) as db:
            return int(db.execute(select(func.count()).select_from(api_keys)).scalar_one())
