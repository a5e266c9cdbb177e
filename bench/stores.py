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
def stores_for(stores: list[str], *, suffixes: tuple[str, ...] = ("",)) -> Iterator[dict[str, str]]:
    """{mode: PROVISIONER_DATABASE_URL} for each store's service mode, alive for the run; one
    database per suffix (`service+sqlite` and `service+sqlite@baseline`: two services side by
    side must not share one, or each would wait for the other's write lock)."""
    server: Any = None
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        urls: dict[str, str] = {}
        try:
            for store in stores:
                for index, suffix in enumerate(suffixes):
                    if store == "off":
                        urls["service" + suffix] = "off"
                    elif store == "sqlite":
                        urls["service+sqlite" + suffix] = f"sqlite:///{Path(tmp) / f'provisioner-{index}.db'}"
                    else:
                        server = server or _postgres()
                        urls["service+postgresql" + suffix] = server.create_database(f"bench{index}")
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
