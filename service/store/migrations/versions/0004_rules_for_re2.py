"""Parameter rules run on RE2 (linear time): rewrite what has a faithful RE2 spelling.

Python's `\\Z` (end of text) is RE2's `\\z`; a rule that RE2 accepts once that is rewritten is
rewritten. Rules RE2 still cannot run (backreferences, lookaround, atomic groups, possessive
quantifiers) are left as they are: the service names them at start and refuses the key's
provisions until an operator replaces it (service.callers.keys.unusable_rules).

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from typing import Any

import re2
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_KEYS = sa.table("api_keys", sa.column("key_id", sa.String), sa.column("scope", sa.JSON))
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False


def upgrade() -> None:
    _rewrite(_for_re2)


def downgrade() -> None:
    _rewrite(lambda pattern: _escape_swapped(pattern, "z", "Z"))


def _rewrite(change: Any) -> None:
    bind = op.get_bind()
    for key_id, scope in bind.execute(sa.select(_KEYS.c.key_id, _KEYS.c.scope)).all():
        rules = (scope or {}).get("parameterRules") or {}
        changed = {name: change(pattern) for name, pattern in rules.items()}
        if changed != rules:
            bind.execute(
                _KEYS.update()
                .where(_KEYS.c.key_id == key_id)
                .values(scope={**scope, "parameterRules": changed})
            )


def _for_re2(pattern: str) -> str:
    if _compiles(pattern):
        return pattern
    rewritten = _escape_swapped(pattern, "Z", "z")
    return rewritten if _compiles(rewritten) else pattern


def _compiles(pattern: str) -> bool:
    try:
        re2.compile(pattern, _OPTIONS)
    except re2.error:
        return False
    return True


def _escape_swapped(pattern: str, old: str, new: str) -> str:
    """`\\<old>` escapes become `\\<new>`; an escaped backslash followed by <old> is left alone."""
    out, index = [], 0
    while index < len(pattern):
        char = pattern[index]
        if char == "\\" and index + 1 < len(pattern):
            following = pattern[index + 1]
            out.append("\\" + (new if following == old else following))
            index += 2
            continue
        out.append(char)
        index += 1
    return "".join(out)
