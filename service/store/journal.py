"""The settlement journal: what the store could not take, kept on local disk until it can.

One file per database on this host, shared by every worker process: JSON lines, appended and
fsync'd under an exclusive `flock`, taken on a descriptor opened for that one operation (so
threads exclude each other too, and nothing stays open between outages). Beside an SQLite
database the file reserves its space when the journal is made (`posix_fallocate`), so the full
disk that stops the database does not stop the journal: records are written into the reserved
zeros, and a reader stops at the first NUL.

A record that has been written to the store is marked by overwriting its first byte with `#`
(one byte: it cannot be torn), checking first that the line still holds that record (another
process may have emptied the journal meanwhile). When no live record is left the used part is
zeroed again. Each line holds one record, which never contains a NUL or a newline (JSON escapes
them). Nothing here knows what a record means: `service.callers.settlement` does.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger("service.store")

# Space reserved beside an SQLite database: about a thousand settlements of a typical size.
RESERVE_BYTES = 2 * 1024 * 1024
_CHUNK = 64 * 1024
DONE = b"#"


class JournalError(OSError):
    """The journal could not keep a record (the disk is full past the reserve, or unwritable)."""


def path_for(store_url: str, data_dir: Path) -> tuple[Path, int]:
    """Where the journal of this database lives, and how much space it reserves.

    Beside an SQLite file: same directory, same disk, so it reserves. Any other database: in
    the data directory, named after the database (never its password), so that two databases
    never share one; nothing is reserved, as the database's disk is not this host's.
    """
    url = make_url(store_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        return Path(url.database).with_name(Path(url.database).name + ".settlements"), RESERVE_BYTES
    name = f"{url.get_backend_name()}://{url.username or ''}@{url.host or ''}:{url.port or ''}/{url.database}"
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return data_dir / f"settlements-{digest}.journal", 0


class Journal:
    def __init__(self, path: Path, *, reserve: int = 0) -> None:
        self.path = path
        self._reserve = reserve
        if reserve:  # now, while the disk has room
            with self._locked(create=True):
                pass

    # -- what the settler uses ----------------------------------------------------------------
    def append(self, record: dict[str, Any]) -> None:
        """Keep `record` durably (written and fsync'd) or raise JournalError."""
        line = json.dumps(record, separators=(",", ":")).encode() + b"\n"
        with self._locked(create=True) as fd:
            data = self._used(fd)
            end, size = len(data), os.fstat(fd).st_size
            if end and not data.endswith(b"\n"):  # a line torn by a crash before its fsync
                line = b"\n" + line
            try:
                if os.pwrite(fd, line, end) != len(line):
                    raise OSError(errno.ENOSPC, "short write")
                os.fsync(fd)
            except OSError as error:
                # The reader must not meet half a record: zero what was there, drop what was added.
                self._zero(fd, end, max(0, min(len(line), size - end)))
                if os.fstat(fd).st_size > size:
                    os.ftruncate(fd, size)
                raise JournalError(
                    error.errno, f"the settlement journal is full or unwritable ({error})"
                ) from None

    def records(self) -> list[tuple[int, dict[str, Any]]]:
        """(offset, record) of every record not yet marked done, oldest first."""
        with self._locked(create=False) as fd:
            if fd is None:
                return []
            return list(self._live(self._used(fd)))

    def done(self, written: Iterable[tuple[int, str]]) -> None:
        """Mark records (offset, id) as written to the store; zero the journal once none is live."""
        marks = list(written)
        if not marks:
            return
        with self._locked(create=False) as fd:
            if fd is None:
                return
            data = self._used(fd)
            for offset, record_id in marks:
                if _id_at(data, offset) == record_id:
                    os.pwrite(fd, DONE, offset)
            os.fsync(fd)
            data = self._used(fd)
            if not any(True for _ in self._live(data)):
                self._zero(fd, 0, min(len(data), self._reserve))
                if os.fstat(fd).st_size > self._reserve:  # what grew past the reserve goes
                    os.ftruncate(fd, self._reserve)
                os.fsync(fd)

    def reject(self, offset: int, record: dict[str, Any], why: str) -> None:
        """Set a record aside that the store refused for good (a bug, not an outage): it goes to
        `<journal>.rejected` for an operator, and stops holding up the others."""
        rejected = self.path.with_name(self.path.name + ".rejected")
        line = json.dumps({"why": why, "record": record}, separators=(",", ":")) + "\n"
        fd = os.open(rejected, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        self.done([(offset, str(record.get("id")))])

    # -- the file ------------------------------------------------------------------------------
    @contextmanager
    def _locked(self, *, create: bool) -> Iterator[Any]:
        """The file, opened and locked for one operation; None when it does not exist (and
        `create` is false)."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            if not create:
                yield None
                return
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            _fsync_directory(self.path.parent)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if self._reserve and os.fstat(fd).st_size < self._reserve:
                try:
                    os.posix_fallocate(fd, 0, self._reserve)
                except OSError as error:  # a full disk or a filesystem without it: still a journal
                    log.warning("settlement journal %s: could not reserve space (%s)", self.path, error)
            yield fd
        finally:
            os.close(fd)  # which releases the lock

    @staticmethod
    def _used(fd: int) -> bytes:
        """The file up to its first NUL: the records, live and done."""
        parts, offset = [], 0
        while True:
            chunk = os.pread(fd, _CHUNK, offset)
            if not chunk:
                break
            end = chunk.find(b"\0")
            if end >= 0:
                parts.append(chunk[:end])
                break
            parts.append(chunk)
            offset += len(chunk)
        return b"".join(parts)

    @staticmethod
    def _zero(fd: int, offset: int, length: int) -> None:
        # Inside space already written or reserved: needs no new blocks, so works on a full disk.
        while length > 0:
            size = min(length, _CHUNK)
            os.pwrite(fd, b"\0" * size, offset)
            offset, length = offset + size, length - size

    def _live(self, data: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
        offset = 0
        for line in data.split(b"\n"):
            start, offset = offset, offset + len(line) + 1
            if not line or line.startswith(DONE):
                continue
            try:
                record = json.loads(line)
            except ValueError:  # torn by a crash before its fsync: it was never confirmed
                log.warning(
                    "settlement journal %s: an unreadable line at byte %d is skipped", self.path, start
                )
                continue
            if isinstance(record, dict):
                yield start, record


def _id_at(data: bytes, offset: int) -> str | None:
    end = data.find(b"\n", offset)
    line = data[offset : end if end >= 0 else len(data)]
    if not line or line.startswith(DONE):
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return str(record.get("id")) if isinstance(record, dict) else None


def _fsync_directory(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
