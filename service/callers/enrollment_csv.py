"""Enrollments from CSV: one device per line, all lines checked before anything is imported.

The header names the columns: the key parameter (e.g. `SerialNumber`) is required; `enabled`
(true/false) and `reprovision` (once/allow) are optional. A bad line is named with its number.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator

from service.errors import InvalidInput
from service.store import EnrollmentEntry
from service.text import problem as unusable

TEMPLATE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,36}\Z")
REPROVISION = ("once", "allow")
MAX_LINES = 100_000
# The import's own body limit (POST /admin/enrollments/import, and nginx's for that route): room
# for MAX_LINES lines of a serial, enabled and reprovision (about 25 bytes each).
MAX_BYTES = 4 * 1024 * 1024
_TRUE = ("true", "1", "yes", "")
_FALSE = ("false", "0", "no")


def entry(
    template: str, parameter: str, value: str, enabled: bool = True, reprovision: str = "once"
) -> EnrollmentEntry:
    """One checked entry (for single adds); InvalidInput naming the field otherwise."""
    problems = _problems(template, parameter, value, reprovision)
    if problems:
        raise InvalidInput("; ".join(problems), errors={"enrollment": problems}, status=422)
    return EnrollmentEntry(template, parameter, value, enabled, reprovision)


def parse(text: str, *, template: str, parameter: str) -> list[EnrollmentEntry]:
    base = _problems(template, parameter, "x", "once")
    if base:
        raise InvalidInput("; ".join(base), errors={"query": base}, status=422)
    # newline="": the csv module itself splits lines (CRLF, LF or CR alone) and keeps quoted line
    # breaks, which _problems then refuses. strict: a stray quote is an error, not a merged value.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows = _rows(reader)
    header = next((row for _, row in rows), [])
    if parameter not in header:
        raise InvalidInput(
            f"line 1: the header has no column '{parameter}' (columns: {', '.join(header) or 'none'})",
            errors={"line 1": [f"no column '{parameter}'"]},
            status=422,
        )
    entries: list[EnrollmentEntry] = []
    errors: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for line, fields in rows:
        if line > MAX_LINES:
            raise InvalidInput(f"at most {MAX_LINES} lines per import", status=413)
        if len(fields) > len(header):
            errors[f"line {line}"] = ["more fields than the header has columns"]
            continue
        row = dict(zip(header, fields, strict=False))
        value = (row.get(parameter) or "").strip()
        enabled_text = (row.get("enabled") or "").strip().lower()
        reprovision = (row.get("reprovision") or "once").strip().lower() or "once"
        problems = _problems(template, parameter, value, reprovision)
        if enabled_text not in _TRUE + _FALSE:
            problems.append(f"enabled must be true or false, got {enabled_text[:40]!r}")
        if value in seen:
            problems.append(f"{parameter} {value[:60]!r} is also on line {seen[value]}")
        if problems:
            errors[f"line {line}"] = problems
            continue
        seen[value] = line
        entries.append(EnrollmentEntry(template, parameter, value, enabled_text not in _FALSE, reprovision))
    if errors:
        shown = "; ".join(f"{where}: {' '.join(p)}" for where, p in list(errors.items())[:5])
        more = f" (and {len(errors) - 5} more lines)" if len(errors) > 5 else ""
        raise InvalidInput(
            f"{len(errors)} line(s) are wrong; nothing was imported: {shown}{more}", errors=errors, status=422
        )
    if not entries:
        raise InvalidInput("the CSV has a header but no devices; nothing was imported", status=422)
    return entries


def _rows(reader: Iterator[list[str]]) -> Iterator[tuple[int, list[str]]]:
    """Each row but blank lines, with the line it begins on; a row the csv module cannot read is a
    422 naming that line (an unbalanced quote reads on to the end: where it began is what to fix)."""
    line_num = 0
    while True:
        begins = line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            raise _unreadable(begins, error) from None
        line_num = reader.line_num  # type: ignore[attr-defined]
        if row:
            yield begins, row


def _unreadable(line: int, error: csv.Error) -> InvalidInput:
    problem = f'not valid CSV from this line on ({error}): is a quote (") left open?'
    return InvalidInput(
        f"line {line}: {problem}; nothing was imported", errors={f"line {line}": [problem]}, status=422
    )


def _problems(template: str, parameter: str, value: str, reprovision: str) -> list[str]:
    problems = []
    if not TEMPLATE_NAME.match(template):
        problems.append("template must be 1-36 characters of [0-9A-Za-z_-]")
    if not parameter or len(parameter) > 128:
        problems.append("parameter must be 1-128 characters")
    elif unusable(parameter):
        problems.append(f"parameter {unusable(parameter)}")
    if not value:
        problems.append("the value is empty")
    elif len(value) > 2048:
        problems.append("the value is longer than 2048 characters")
    elif "\n" in value or "\r" in value:
        # A quote left open joins the lines that follow into one value: never a serial.
        problems.append("the value holds a line break (a quote left open?)")
    elif unusable(value):
        problems.append(f"the value {unusable(value)}")
    if reprovision not in REPROVISION:
        problems.append(f"reprovision must be once or allow, got {reprovision[:40]!r}")
    return problems
