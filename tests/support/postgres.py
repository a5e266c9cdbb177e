"""A throwaway PostgreSQL cluster for tests: its own data directory, a free loopback port, no durability.

``initdb`` refuses to run as root, and CI runs as root: then every server binary runs as the ``postgres``
user (``runuser -u postgres --``) and the temporary directory is chowned to it. As any other user the
binaries run directly. Only 127.0.0.1 listens; authentication is ``trust``.

    server = PostgresServer().start()
    url = server.create_database()  # postgresql+psycopg://postgres@127.0.0.1:<port>/<name>
    server.stop()                   # pg_ctl stop -m fast, then the data directory is removed
"""

from __future__ import annotations

import atexit
import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg

_REQUIRED = ("initdb", "pg_ctl", "postgres")
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SUPERUSER = "postgres"


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries (initdb, pg_ctl, postgres) are not installed."""


def _has_server(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in _REQUIRED)


def _version_key(bindir: str) -> tuple[int, ...]:
    version = Path(bindir).parent.name  # /usr/lib/postgresql/<version>/bin
    return tuple(int(part) for part in version.split(".") if part.isdigit())


def find_bindir() -> Path | None:
    """The directory holding initdb/pg_ctl/postgres, or None.

    ``$TEST_PG_BINDIR`` alone when set; otherwise ``pg_config --bindir`` first (on Debian it can come from
    libpq-dev alone, so the binaries are checked), then the highest version under /usr/lib/postgresql/*/bin,
    then ``initdb`` on PATH.
    """
    if os.environ.get("TEST_PG_BINDIR"):
        forced = Path(os.environ["TEST_PG_BINDIR"])
        return forced if _has_server(forced) else None
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            if out.returncode == 0 and out.stdout.strip():
                candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    ]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    return next((path for path in candidates if _has_server(path)), None)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One throwaway cluster. ``start()`` once, ``create_database()`` as often as needed, ``stop()``;
    ``halt()`` and ``resume()`` for an outage."""

    def __init__(self, bindir: Path | None = None, *, start_timeout: float = 30.0) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable("PostgreSQL 15 not installed (apt-get install postgresql)")
        self.bindir = found
        self.start_timeout = start_timeout
        self.host = "127.0.0.1"
        self.port = 0
        self.base_dir: Path | None = None
        self._as_postgres = os.geteuid() == 0
        self._names = itertools.count(1)
        self._lock = threading.Lock()
        self._admin: psycopg.Connection | None = None

    # -- paths ---------------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        assert self.base_dir is not None, "not started"
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base_dir is not None, "not started"
        return self.base_dir / "sock"

    @property
    def log_file(self) -> Path:
        assert self.base_dir is not None, "not started"
        return self.base_dir / "postgres.log"

    # -- running the binaries ------------------------------------------------------------------------
    def _run(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bindir / args[0]), *args[1:]]
        if self._as_postgres:
            cmd = ["runuser", "-u", SUPERUSER, "--", *cmd]
        # cwd: the postgres user may not be allowed into the caller's working directory.
        # Output goes to a file, not a pipe: the postmaster pg_ctl forks must not hold our pipe open.
        with tempfile.TemporaryFile("w+") as out:
            proc = subprocess.run(
                cmd,
                cwd=self.base_dir,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=timeout,
                env={**os.environ, "LC_ALL": "C", "LANG": "C"},
            )
            out.seek(0)
            proc.stdout = out.read()
        if proc.returncode != 0:
            log = self.log_file.read_text(errors="replace")[-4000:] if self.log_file.exists() else ""
            raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}\n{log}")
        return proc

    def _conninfo(self, dbname: str) -> str:
        return f"host={self.host} port={self.port} user={SUPERUSER} dbname={dbname} connect_timeout=5"

    # -- lifecycle -----------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        if self._as_postgres:
            try:
                owner = pwd.getpwnam(SUPERUSER)
            except KeyError:
                raise PostgresUnavailable(f"running as root but there is no {SUPERUSER!r} user") from None
        # Not pytest's tmp_path: that lives under a root-only 0700 directory the postgres user cannot enter.
        self.base_dir = Path(tempfile.mkdtemp(prefix="pgtest-"))
        try:
            self.socket_dir.mkdir()
            if self._as_postgres:
                for path in (self.base_dir, self.socket_dir):
                    os.chown(path, owner.pw_uid, owner.pw_gid)
            self._run(
                "initdb",
                "-D",
                str(self.data_dir),
                "-A",
                "trust",
                "-U",
                SUPERUSER,
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            )
            for attempt in range(3):  # the free port can be taken between probing and binding
                self.port = _free_port()
                try:
                    self._pg_ctl_start()
                    break
                except RuntimeError:
                    if attempt == 2:
                        raise
            self._admin = self._wait_ready()
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def _pg_ctl_start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses={self.host} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
            "-c max_connections=200"
        )
        self._run(
            "pg_ctl",
            "start",
            "-D",
            str(self.data_dir),
            "-l",
            str(self.log_file),
            "-w",
            "-t",
            str(int(self.start_timeout)),
            "-o",
            options,
            timeout=self.start_timeout + 10,
        )

    def halt(self) -> None:
        """Stop the server as an outage would (``pg_ctl stop -m fast``: connections are cut),
        keeping its data and port for ``resume()``."""
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", timeout=60)

    def resume(self) -> None:
        """Start a halted server again, on the same port with the same data."""
        self._pg_ctl_start()
        self._admin = self._wait_ready()

    def _wait_ready(self) -> psycopg.Connection:
        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                return psycopg.connect(self._conninfo("postgres"), autocommit=True)
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"PostgreSQL on port {self.port} did not accept connections: {exc}"
                    ) from exc
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop the server (``pg_ctl stop -m fast``) and remove the data directory. Idempotent."""
        atexit.unregister(self.stop)
        if self._admin is not None:
            self._admin.close()
            self._admin = None
        if self.base_dir is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "fast", "-w", timeout=60)
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)
            self.base_dir = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- databases -----------------------------------------------------------------------------------
    def url(self, name: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@{self.host}:{self.port}/{name}"

    def create_database(self, name: str | None = None) -> str:
        """Create an empty database (a copy of template1) and return its SQLAlchemy URL."""
        if name is None:
            name = f"test_{os.getpid()}_{next(self._names)}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        with self._lock:
            assert self._admin is not None, "not started"
            self._admin.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting whoever is still connected to it."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"not a plain lower-case identifier: {name!r}")
        with self._lock:
            assert self._admin is not None, "not started"
            self._admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
