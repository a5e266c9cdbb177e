"""Files written whole or not at all: a crash leaves the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import errno
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
    """`path` (and its parents), never through a symbolic link: the folders the CLI makes under
    --out hold private keys, and a link placed there beforehand would send them elsewhere (and a
    chmod through it would change a folder that is not ours). `path` itself must be a real
    directory of this user; a private one (it will hold keys) is made 0700, also if it existed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700 if private else 0o755)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as error:
        if error.errno in (errno.ELOOP, errno.ENOTDIR) and path.is_symlink():
            refused = "a symbolic link, not a folder: refusing to write through it"
            raise OSError(error.errno, refused, str(path)) from None
        raise
    try:
        if os.fstat(fd).st_uid != os.geteuid():
            raise OSError(errno.EPERM, "a folder of another user: refusing to write keys into it", str(path))
        if private:
            os.fchmod(fd, 0o700)  # the folder itself, never what a link points to
    finally:
        os.close(fd)
    return path


def _sync_directory(directory: Path) -> None:
    # The rename itself must reach the disk too, or a power cut could undo it.
    with contextlib.suppress(OSError):  # some filesystems cannot fsync a directory; the rename stands
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
