"""Plain text out: aligned tables, times, JSON; no colours, nothing a pipe would not want."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, Protocol, TypeVar

import click


def cell(value: object) -> str:
    """One table cell: '-' for nothing, control characters shown as '?' so a row stays a row."""
    if value is None or value == "":
        return "-"
    if isinstance(value, datetime):
        return moment(value)
    return "".join(c if c.isprintable() else "?" for c in str(value))


def moment(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%SZ") if value is not None else "-"


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
    cells = [[cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(row[i]) for row in cells)]) for i, h in enumerate(headers)]
    for row in [list(headers), *cells]:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


T = TypeVar("T")


def listed(records: Sequence[T], as_json_: bool, view: Callable[[T], object], empty: str) -> bool:
    """What a list command prints before its table: with --json, the admin API's objects as one
    JSON array; else `empty` when there are no records. True when that was the whole answer."""
    if as_json_:
        click.echo(as_json([view(r) for r in records]))
        return True
    if not records:
        click.echo(empty)
        return True
    return False


class Limited(Protocol):
    """An API key or a device CA: both have a quota and a rate."""

    @property
    def provisions(self) -> int: ...
    @property
    def max_provisions(self) -> int | None: ...
    @property
    def rate_per_minute(self) -> int | None: ...


def usage_cells(record: Limited) -> tuple[str, str | None]:
    """A table's provisions (of the quota) and rate cells."""
    limit = f"/{record.max_provisions}" if record.max_provisions is not None else ""
    rate = f"{record.rate_per_minute}/min" if record.rate_per_minute is not None else None
    return f"{record.provisions}{limit}", rate


def usage_fields(record: Limited) -> list[tuple[str, object]]:
    """The `provisions` (of the quota) and `rate` lines of a `fields` list."""
    limit = f" of {record.max_provisions}" if record.max_provisions is not None else " (no limit)"
    return [
        ("provisions", f"{record.provisions}{limit}"),
        ("rate", f"{record.rate_per_minute}/min" if record.rate_per_minute else "no limit"),
    ]


def fields(pairs: Iterable[tuple[str, object]]) -> None:
    """`name: value` lines, the values aligned."""
    pairs = list(pairs)
    width = max(len(name) for name, _ in pairs) + 1
    for name, value in pairs:
        click.echo(f"{name + ':':<{width}} {cell(value)}")


# A spreadsheet runs a cell that starts with one of these as a formula (OWASP, "CSV Injection"):
# `=cmd|'/C calc'!A0` sent as an Idempotency-Key would run on the auditor's machine.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    """A CSV cell a spreadsheet shows as text: a string starting like a formula gets a leading
    apostrophe (OWASP's advice); numbers stay numbers."""
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def as_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
