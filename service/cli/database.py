"""`db`: the store's schema, migrated on demand (the server also migrates when it starts)."""

from __future__ import annotations

import click

from service.cli.context import Runtime, pass_runtime
from service.cli.output import fields
from service.store.engine import current_revision, head_revision, migrate


@click.group("db")
def group() -> None:
    """The database: upgrade, status. The URL itself is never printed."""


@group.command("upgrade")
@pass_runtime
def upgrade(runtime: Runtime) -> None:
    """Run the migrations up to the newest schema."""
    store = runtime.store(upgrade=False)
    before = current_revision(store.engine)
    migrate(store.engine)
    after = current_revision(store.engine)
    if before == after:
        click.echo(f"already at revision {after} (head)")
    else:
        click.echo(f"upgraded from {before or 'empty'} to revision {after}")


@group.command("status")
@pass_runtime
def status(runtime: Runtime) -> None:
    """The backend, the schema revision and the newest one; exit 1 if unreachable."""
    store = runtime.store(upgrade=False)
    described = store.describe()
    head = head_revision()
    if "error" in described:
        fields([("backend", store.engine.dialect.name), ("state", described["error"])])
        raise click.exceptions.Exit(1)
    revision = described["schema"]
    state = "up to date" if revision == head else "behind: run python -m service db upgrade"
    fields([("backend", described["backend"]), ("revision", revision), ("head", head), ("state", state)])
