"""The databases a benchmark's services use: none, a fresh SQLite file, a throwaway PostgreSQL."""

from __future__ import annotations

import importlib.util
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

# The test suite's PostgreSQL helper (initdb as the postgres user when run as root).
_POSTGRES_HELPER = Path(__file__).resolve().parents[1] / "tests" / "support" / "postgres.py"


@contextmanager
def stores_for(stores: list[str]) -> Iterator[dict[str, str]]:
    """{mode: PROVISIONER_DATABASE_URL} for each store's service mode, alive for the run."""
    server: Any = None
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        urls: dict[str, str] = {}
        try:
            for store in stores:
                if store == "off":
                    urls["service"] = "off"
                elif store == "sqlite":
                    urls["service+sqlite"] = f"sqlite:///{Path(tmp) / 'provisioner.db'}"
                else:
                    server = _postgres()
                    urls["service+postgresql"] = server.create_database("bench")
            yield urls
        finally:
            if server is not None:
                server.stop()


def _postgres() -> Any:
    spec = importlib.util.spec_from_file_location("bench_postgres", _POSTGRES_HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bindir = module.find_bindir()
    if bindir is None:
        raise SystemExit("--stores postgresql needs PostgreSQL (apt-get install postgresql)")
    return module.PostgresServer(bindir).start()
