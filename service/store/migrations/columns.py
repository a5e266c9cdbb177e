"""Column sets more than one migration creates, written once.

A migration is history: what it creates must never change. So nothing here changes either once a
migration uses it; a later migration that wants something else writes its own.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

UTC_TIME = sa.DateTime(timezone=True)


def audit_id() -> sa.Column[int]:
    """The id of an audit trail's rows: 64 bits, and SQLite's INTEGER so that it autoincrements."""
    return sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True, autoincrement=True
    )


def quota() -> list[sa.Column[int]]:
    """What an API key and a device CA both have: a quota, a rate, and the provisions counted."""
    return [
        sa.Column("max_provisions", sa.Integer, nullable=True),
        sa.Column("rate_per_minute", sa.Integer, nullable=True),
        sa.Column("provisions", sa.Integer, nullable=False),
    ]


def create_window_table(name: str, owner: str) -> None:
    """An owner's requests in one fixed minute (an API key's, a device CA's)."""
    op.create_table(
        name,
        sa.Column(owner, sa.String(32), primary_key=True),
        sa.Column("window", sa.BigInteger, primary_key=True),
        sa.Column("requests", sa.Integer, nullable=False),
    )


def of_device_ca(constraint: str) -> sa.Column[str]:
    """A row of a device CA's (its block list, its CRL), deleted with it."""
    return sa.Column(
        "ca_id",
        sa.String(32),
        sa.ForeignKey("device_cas.ca_id", ondelete="CASCADE", name=constraint),
        primary_key=True,
    )


def thing_and_certificate() -> list[sa.Column[str]]:
    """What an audit record names of AWS IoT's, when it has them."""
    return [
        sa.Column("thing_name", sa.String(128), nullable=True),
        sa.Column("certificate_id", sa.String(64), nullable=True),
    ]


def add_columns(table: str, *columns: sa.Column[str]) -> None:
    for column in columns:
        op.add_column(table, column)


def drop_columns(table: str, *names: str) -> None:
    """SQLite drops a column by copying the table (batch mode)."""
    with op.batch_alter_table(table) as batch:
        for name in names:
            batch.drop_column(name)
