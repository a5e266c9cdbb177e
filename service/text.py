"""Text the service can keep: no NUL and no lone surrogate, in any string the API takes.

PostgreSQL's text cannot hold U+0000, and a lone surrogate (U+D800-U+DFFF alone, which JSON's
`\\ud800` escape makes) is not a character: neither SQLite, PostgreSQL nor UTF-8 can store it.
Both are refused where the request is read (422 naming the field), so no query ever sees them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from service.errors import InvalidInput

_UNUSABLE = re.compile("[\x00\ud800-\udfff]")


def problem(text: str) -> str | None:
    """Why `text` cannot be kept, or None."""
    found = _UNUSABLE.search(text)
    if found is None:
        return None
    if found.group() == "\x00":
        return "contains a NUL character (U+0000), which no text here may hold"
    return f"contains a lone surrogate (U+{ord(found.group()):04X}), which is not a Unicode character"


def refuse_unusable(value: Any, where: str = "") -> None:
    """Raise a 422 naming every field of a JSON value (or of query arguments) that holds text
    `problem` refuses; nested fields are named `parameters.SerialNumber`, `templates[0]`."""
    errors: dict[str, list[str]] = {}
    _collect(value, where, errors)
    if errors:
        summary = "; ".join(f"{field}: {' '.join(found)}" for field, found in errors.items())
        raise InvalidInput(f"The request breaks {len(errors)} rule(s): {summary}", errors=errors, status=422)


def _collect(value: Any, where: str, errors: dict[str, list[str]]) -> None:
    if isinstance(value, str):
        found = problem(value)
        if found is not None:
            errors.setdefault(where or "body", []).append(found)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found = problem(key)
            if found is not None:
                errors.setdefault(where or "body", []).append(f"a field name {found}")
                continue
            shown = key if len(key) <= 40 else key[:40] + "..."
            _collect(item, f"{where}.{shown}" if where else shown, errors)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _collect(item, f"{where}[{index}]", errors)
