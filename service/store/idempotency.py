"""Idempotency records: the first response to a (caller key, Idempotency-Key) pair."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.sql import Executable

from service.store.base import Queries
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


_THIS = and_(
    idempotency.c.key_id == bindparam("b_key_id"),
    idempotency.c.idempotency_key == bindparam("b_idempotency_key"),
)
_GET = select(idempotency).where(_THIS)
_DELETE = delete(idempotency).where(_THIS)


@cache
def _insert_new(dialect: str) -> Executable:
    """Insert unless the pair exists, saying whether it did: one statement for a first attempt."""
    insert_ = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert_(idempotency).on_conflict_do_nothing().returning(idempotency.c.key_id)


_FINISH = (
    update(idempotency)
    .where(_THIS)
    .values(
        state="done",
        http_status=bindparam("b_http_status"),
        response=bindparam("b_response"),
        had_private_key=bindparam("b_had_private_key"),
    )
)


class IdempotencyQueries(Queries):
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

        An expired record is taken over. A running one whose lock lapsed is not: its outcome was
        never recorded (a journaled settlement, a crash) and it may have provisioned.
        """
        this = {"b_key_id": key_id, "b_idempotency_key": key}
        new = {
            "key_id": key_id,
            "idempotency_key": key,
            "request_sha256": request_sha256,
            "state": "running",
            "locked_until": lock_until,
            "expires_at": expires_at,
            "had_private_key": False,
        }
        with self._db() as db:
            for _ in range(3):
                if db.execute(_insert_new(self.dialect), new).first() is not None:
                    return None
                row = db.execute(_GET, this).mappings().first()
                if row is None:
                    continue  # deleted in between: try again
                existing = IdempotencyRecord(**row)
                if existing.expires_at > now:
                    return existing
                db.execute(_DELETE, this)  # expired: take it over
        raise RuntimeError("idempotency record kept changing")  # pragma: no cover

    def finish(
        self, key_id: str, key: str, http_status: int, response: dict[str, Any], had_private_key: bool
    ) -> None:
        values = {"b_http_status": http_status, "b_response": response, "b_had_private_key": had_private_key}
        with self._db() as db:
            db.execute(_FINISH, {"b_key_id": key_id, "b_idempotency_key": key, **values})

    def forget(self, key_id: str, key: str) -> None:
        with self._db() as db:
            db.execute(_DELETE, {"b_key_id": key_id, "b_idempotency_key": key})

    def prune(self, now: datetime) -> int:
        with self._db() as db:
            return db.execute(delete(idempotency).where(idempotency.c.expires_at < now)).rowcount
