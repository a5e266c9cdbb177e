"""API keys: issued, looked up by id, counted, limited and revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

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


class KeyQueries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def insert(self, record: KeyRecord) -> None:
        with self._engine.begin() as db:
            db.execute(insert(api_keys).values(**record.__dict__))

    def get(self, key_id: str) -> KeyRecord | None:
        with self._engine.connect() as db:
            row = db.execute(select(api_keys).where(api_keys.c.key_id == key_id)).mappings().first()
        return KeyRecord(**row) if row else None

    def list(self) -> list[KeyRecord]:
        with self._engine.connect() as db:
            rows = db.execute(select(api_keys).order_by(api_keys.c.created_at)).mappings().all()
        return [KeyRecord(**row) for row in rows]

    def revoke(self, key_id: str, at: datetime) -> bool:
        with self._engine.begin() as db:
            done = db.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=at)
            )
        return done.rowcount == 1

    def count_request(self, key_id: str, window: int, at: datetime) -> int:
        """Count one request in the key's minute window (atomic across hosts); the new count."""
        insert_ = postgresql.insert if self._engine.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert_(rate_windows)
            .values(key_id=key_id, window=window, requests=1)
            .on_conflict_do_update(
                index_elements=["key_id", "window"],
                set_={"requests": rate_windows.c.requests + 1},
            )
            .returning(rate_windows.c.requests)
        )
        with self._engine.begin() as db:
            count = int(db.execute(statement).scalar_one())
            db.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=at))
            if count == 1:  # a new window: forget the old ones of this key
                db.execute(
                    rate_windows.delete().where(
                        rate_windows.c.key_id == key_id, rate_windows.c.window < window
                    )
                )
        return count

    def take_provision(self, key_id: str) -> bool:
        """Reserve one provision of the key's quota; False when it is used up (atomic)."""
        with self._engine.begin() as db:
            done = db.execute(
                update(api_keys)
                .where(
                    api_keys.c.key_id == key_id,
                    (api_keys.c.max_provisions.is_(None))
                    | (api_keys.c.provisions < api_keys.c.max_provisions),
                )
                .values(provisions=api_keys.c.provisions + 1)
            )
        return done.rowcount == 1

    def give_back_provision(self, key_id: str) -> None:
        """Undo `take_provision` for a provision that did not happen."""
        with self._engine.begin() as db:
            db.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.provisions > 0)
                .values(provisions=api_keys.c.provisions - 1)
            )

    def touch(self, key_id: str, at: datetime) -> None:
        with self._engine.begin() as db:
            db.execute(update(api_keys).where(api_keys.c.key_id == key_id).values(last_used_at=at))

    def count(self) -> int:
        with self._engine.connect() as db:
            return int(db.execute(select(func.count()).select_from(api_keys)).scalar_one())
