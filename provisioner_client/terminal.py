"""Text the CLI did not write (serials from a CSV, thing names, the service's messages) made safe to
print with Rich: its markup escaped, so `[/red]` is text and never a crash, and control characters
shown as `\\xNN`, so an escape sequence in a serial never reaches the terminal."""

from __future__ import annotations

import re

from rich.markup import escape
from rich.text import Text

# C0 and C1 controls and DEL: ESC starts terminal escape sequences, CR and BS overwrite what was
# printed, and the rest have no business in a serial or a message either.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def plain(value: object) -> str:
    """`value` as text without control characters (each shown as \\xNN)."""
    return _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", str(value))


def shown(value: object) -> str:
    """`value` for a Rich markup string: controls made visible, markup escaped."""
    return escape(plain(value))


def cell(value: object) -> Text:
    """`value` as a table cell: plain text, never read as markup or emoji codes."""
    return Text(plain(value))
