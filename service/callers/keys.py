"""API keys: issued here, shown once, kept only as a SHA-256 hash, verified per request.

A key reads `iotp_<key id>_<secret>`: the id is visible (logs, audit, the admin API), the secret
is 256 random bits. A fast hash is enough for a 256-bit secret (nothing to brute-force); the
comparison is constant-time. `PROVISIONER_API_KEYS` stay as bootstrap admin keys.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from service.callers import rules
from service.callers.model import ROLES, Caller, KeySpec, Scope
from service.errors import InvalidInput, Unauthorized
from service.store import KeyRecord, Store

PREFIX = "iotp"
_TOKEN = re.compile(rf"^{PREFIX}_(k[0-9a-f]{{12}})_([A-Za-z0-9_-]{{43}})$")
UNKNOWN = "The API key is not valid."  # one message for unknown, revoked and expired keys
# Key records are kept this long per process: a lookup per request costs more than the rest of
# the gate. Revoking (or a changed scope) reaches every worker within this time; the CLI and the
# admin API say so.
CACHE_SECONDS = 2.0
_CACHE_LIMIT = 10_000


def issue(store: Store, spec: KeySpec, now: datetime) -> tuple[KeyRecord, str]:
    """Create a key; return its record and the token, which is never available again."""
    if spec.role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", status=422)
    broken = {
        f"parameterRules.{name}": why for name, why in rules.problems(spec.scope.parameter_rules).items()
    }
    if broken:
        raise InvalidInput(
            "; ".join(f"{where}: {why}" for where, why in broken.items()),
            errors={where: [why] for where, why in broken.items()},
            status=422,
        )
    key_id = "k" + secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    record = KeyRecord(
        key_id=key_id,
        secret_sha256=_sha256(secret),
        name=spec.name,
        role=spec.role,
        scope=spec.scope.to_json(),
        max_provisions=spec.max_provisions,
        rate_per_minute=spec.rate_per_minute,
        provisions=0,
        created_at=now,
        expires_at=spec.expires_at,
        revoked_at=None,
        last_used_at=None,
    )
    store.keys.insert(record)
    return record, f"{PREFIX}_{key_id}_{secret}"


def authenticate(
    authorization: str | None, bootstrap_keys: Sequence[str], store: Store, now: datetime
) -> Caller:
    """The caller behind `Authorization: Bearer <key>`, or Unauthorized (never saying why a
    known key failed: unknown, revoked and expired read the same)."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Send the API key as 'Authorization: Bearer <key>'.")
    issued = _TOKEN.fullmatch(token)
    if issued:
        record = _records.get(store, issued.group(1))
        if record is None or not hmac.compare_digest(record.secret_sha256, _sha256(issued.group(2))):
            raise Unauthorized(UNKNOWN)
        if record.revoked_at is not None or (record.expires_at is not None and record.expires_at <= now):
            raise Unauthorized(UNKNOWN)
        return caller_of(record)
    index = _bootstrap_index(token, bootstrap_keys)
    if index is None:
        raise Unauthorized(UNKNOWN)
    return Caller(key_id=f"bootstrap-{index + 1}", role="admin", bootstrap=True)


class _RecordCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (store, key id) -> (when read, record or None for unknown)
        self._records: OrderedDict[tuple[int, str], tuple[float, KeyRecord | None]] = OrderedDict()
        # Bumped by forget(): a read that began before a revocation is not kept.
        self._generation = 0

    def get(self, store: Store, key_id: str) -> KeyRecord | None:
        now = time.monotonic()
        entry = (id(store), key_id)
        found = self._records.get(entry)
        if found is not None and now - found[0] < CACHE_SECONDS:
            return found[1]
        generation = self._generation
        record = store.keys.get(key_id)
        with self._lock:
            if generation == self._generation:
                self._records[entry] = (now, record)
                self._records.move_to_end(entry)
                while len(self._records) > _CACHE_LIMIT:  # oldest first, never all at once
                    self._records.popitem(last=False)
        return record

    def forget(self, key_id: str) -> None:
        with self._lock:
            self._generation += 1
            for entry in [e for e in self._records if e[1] == key_id]:
                del self._records[entry]


_records = _RecordCache()


def forget(key_id: str) -> None:
    """Drop a key from this process's cache (after revoking it here)."""
    _records.forget(key_id)


def caller_of(record: KeyRecord) -> Caller:
    return Caller(
        key_id=record.key_id,
        role=record.role,
        scope=Scope.from_json(record.scope),
        rate_per_minute=record.rate_per_minute,
        max_provisions=record.max_provisions,
    )


def _bootstrap_index(token: str, keys: Sequence[str]) -> int | None:
    # Every key is compared, with no early exit, so the time taken does not tell which matched.
    presented = token.encode("utf-8", "surrogateescape")
    found = None
    for index, key in enumerate(keys):
        if hmac.compare_digest(presented, key.encode("utf-8")):
            found = index
    return found


def _sha256(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def unusable_rules(store: Store, now: datetime) -> list[tuple[str, str, str]]:
    """(key id, parameter, why) for each rule of a live key that RE2 cannot run: rules stored
    before rules ran on RE2. Such a key refuses every provision until it is replaced."""
    found = []
    for record in store.keys.list():
        if record.revoked_at is not None or (record.expires_at is not None and record.expires_at <= now):
            continue
        for name, why in Scope.from_json(record.scope).invalid_rules.items():
            found.append((record.key_id, name, why))
    return found
