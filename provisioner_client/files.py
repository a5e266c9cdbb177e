"""Files written whole or not at all: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

SECRET = 0o600
PUBLIC = 0o644


def write_atomic(path: Path, data: bytes, *, mode: int = PUBLIC) -> None:
    """Write `data` to a temporary file beside `path`, flush it to disk, then rename it over `path`.

    The file is created with `mode` by os.open itself, so a secret is never readable by others,
    not even for the moment between creating and chmod-ing it.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # os.open's mode is narrowed by the umask; make it exactly `mode`
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temporary, path)
    _sync_directory(path.parent)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


def make_directory(path: Path, *, private: bool = False) -> Path:
    """`path` and its parents; a private one (it will hold keys) is 0700."""
    path.mkdir(parents=True, exist_ok=True)
    if private:
        path.chmod(0o700)
    return path


def _sync_directory(directory: Path) -> None:
    # The rename itself must reach the disk too, or a power cut could undo it.
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory; the rename stands
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
