"""Enrollments from CSV: one device per line, all lines checked before anything is imported.

The header names the columns: the key parameter (e.g. `SerialNumber`) is required; `enabled`
(true/false) and `reprovision` (once/allow) are optional. A bad line is named with its number.
"""

from __future__ import annotations

import csv
import io
import re

from service.errors import InvalidInput
from service.store import EnrollmentEntry

TEMPLATE_NAME = re.compile(r"^[0-9A-Za-z_-]{1,36}\Z")
REPROVISION = ("once", "allow")
MAX_LINES = 100_000
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
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if parameter not in header:
        raise InvalidInput(
            f"line 1: the header has no column '{parameter}' (columns: {', '.join(header) or 'none'})",
            errors={"line 1": [f"no column '{parameter}'"]},
            status=422,
        )
    entries: list[EnrollmentEntry] = []
    errors: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if line > MAX_LINES:
            raise InvalidInput(f"at most {MAX_LINES} lines per import", status=413)
        if None in row:
            errors[f"line {line}"] = ["more fields than the header has columns"]
            continue
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


def _problems(template: str, parameter: str, value: str, reprovision: str) -> list[str]:
    problems = []
    if not TEMPLATE_NAME.match(template):
        problems.append("template must be 1-36 characters of [0-9A-Za-z_-]")
    if not parameter or len(parameter) > 128:
        problems.append("parameter must be 1-128 characters")
    if not value:
        problems.append("the value is empty")
    elif len(value) > 2048:
        problems.append("the value is longer than 2048 characters")
    if reprovision not in REPROVISION:
        problems.append(f"reprovision must be once or allow, got {reprovision[:40]!r}")
    return problems
