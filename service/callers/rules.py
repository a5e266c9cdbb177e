"""Parameter rules: an operator's regular expression per parameter, matched in linear time.

Rules run on RE2 (`google-re2`): matching time grows with the value's length only, whatever the
pattern, so no rule can hold a worker (a backtracking engine takes exponential time on
`^(a+)+$` against `aaa...!`). RE2 has no backreferences, lookaround, atomic groups or possessive
quantifiers, and spells the end of text `\\z` (Python's `\\Z`): such rules are refused when a key
is created, with the reason. `\\d`, `\\w` and `\\s` match ASCII only (Python's match any Unicode
digit, letter or space), so a rule can only become stricter, never looser.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import re2

# A rule is an operator's regular expression; bounded so that a typo cannot make compiling slow.
MAX_RULE_LENGTH = 500

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print the pattern to stderr; the caller gets the reason

# RE2's parse errors, in words an operator can act on.
_HINTS = (
    ("invalid escape sequence: \\Z", "RE2 writes the end of text as \\z, not \\Z"),
    ("invalid escape sequence: \\", "RE2 has no backreferences (\\1, \\k<name>) nor this escape"),
    ("invalid perl operator: (?=", "RE2 has no lookahead (?=...)"),
    ("invalid perl operator: (?!", "RE2 has no lookahead (?!...)"),
    ("invalid perl operator: (?<", "RE2 has no lookbehind (?<=...), (?<!...)"),
    ("invalid perl operator: (?>", "RE2 has no atomic groups (?>...)"),
    ("invalid perl operator: (?P", "RE2 has no backreferences (?P=name)"),
    ("bad repetition operator: ++", "RE2 has no possessive quantifiers (++, *+, ?+)"),
    ("bad repetition operator: *+", "RE2 has no possessive quantifiers (++, *+, ?+)"),
    ("bad repetition operator: ?+", "RE2 has no possessive quantifiers (++, *+, ?+)"),
    ("invalid repetition size", "RE2 allows counted repetition up to 1000 (nested counts multiply)"),
    ("pattern too large", "the pattern is too large for RE2 (nested counted repetitions)"),
)


class RuleError(ValueError):
    """A rule RE2 cannot run; the message says why, in words an operator can act on."""


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> re2._Regexp:
    """The rule compiled once per process (RuleError if RE2 cannot run it)."""
    if len(pattern) > MAX_RULE_LENGTH:
        raise RuleError(f"longer than {MAX_RULE_LENGTH} characters")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as error:
        raise RuleError(_why(error)) from None


def problem(pattern: str) -> str | None:
    """Why RE2 cannot run this rule, or None when it can."""
    try:
        compiled(pattern)
    except RuleError as error:
        return str(error)
    return None


def problems(rules: Mapping[str, str]) -> dict[str, str]:
    """Each parameter whose rule cannot run, with why."""
    found = {}
    for name, pattern in rules.items():
        why = problem(pattern)
        if why is not None:
            found[name] = why
    return found


def matches(pattern: str, value: str) -> bool:
    """Whether `value` matches the whole rule (linear in len(value))."""
    return compiled(pattern).fullmatch(value) is not None


def _why(error: re2.error) -> str:
    raw = error.args[0] if error.args else ""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for needle, hint in _HINTS:
        if text.startswith(needle):
            return f"{hint} ({text})"
    return f"not a regular expression RE2 accepts ({text})"
