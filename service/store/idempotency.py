"""Idempotency records: the first response to a (caller key, Idempotency-Key) pair."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, and_, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from service.store.tables import idempotency


@dataclass(frozen=True)
class IdempotencyRecord:
    key_id: str
    idempotency_key: str
    request_sha256: str
    state: str
    locked_until: datetime
    expires_at: datetime
    http_status: int | None
    response: dict[str, Any] | None
    had_private_key: bool


class IdempotencyQueries:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def start(
        self,
        key_id: str,
        key: str,
        request_sha256: str,
        now: datetime,
        lock_until: datetime,
        expires_at: datetime,
    ) -> IdempotencyRecord | None:
        """Record a first attempt and return None; or return the record already there.

        An expired record, or a running one whose holder's lock lapsed (a crash), is taken over.
        """
        this = and_(idempotency.c.key_id == key_id, idempotency.c.idempotency_key == key)
        for _ in range(3):
            with self._engine.begin() as db:
                row = db.execute(select(idempotency).where(this)).mappings().first()
                if row is not None:
                    existing = IdempotencyRecord(**row)
                    lapsed = existing.state == "running" and existing.locked_until < now
                    if existing.expires_at > now and not lapsed:
                        return existing
                    if lapsed and existing.request_sha256 != request_sha256 and existing.expires_at > now:
                        return existing
                    db.execute(delete(idempotency).where(this))
                try:
                    with db.begin_nested():
                        db.execute(
                            insert(idempotency).values(
                                key_id=key_id,
                                idempotency_key=key,
                                request_sha256=request_sha256,
                                state="running",
                                locked_until=lock_until,
                                expires_at=expires_at,
                                had_private_key=False,
                            )
                        )
                except IntegrityError:
                    continue  # another host recorded it first: read theirs
                return None
        raise RuntimeError("idempotency record kept changing")  # pragma: no cover

    def finish(
        self, key_id: str, key: str, http_status: int, response: dict[str, Any], had_private_key: bool
    ) -> None:
        with self._engine.begin() as db:
            db.execute(
                update(idempotency)
                .where(idempotency.c.key_id == key_id, idempotency.c.idempotency_key == key)
                .values(
                    state="done", http_status=http_status, response=response, had_private_key=had_private_key
                )
            )

    def forget(self, key_id: str, key: str) -> None:
        with self._engine.begin() as db:
            db.execute(
                delete(idempotency).where(
                    idempotency.c.key_id == key_id, idempotency.c.idempotency_key == key
                )
            )

    def prune(self, now: datetime) -> int:
        with self._engine.begin() as db:
            return db.execute(delete(idempotency).where(idempotency.c.expires_at < now)).rowcount
