"""One frozen dataclass made from another object that holds the same facts under the same names.

A store row becomes the model the gate uses, a flow's result becomes what a door answers: each
field is read from the source's attribute of that name, unless the caller gives it (a value that
must be converted, or one the source does not have).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

Made = TypeVar("Made")


def copy_fields(source: object, cls: type[Made], **given: Any) -> Made:
    """`cls(**given)` with every other init field of `cls` read from `source`'s same-named
    attribute; AttributeError names the first one `source` lacks."""
    values = {
        each.name: getattr(source, each.name)
        for each in fields(cls)  # type: ignore[arg-type]
        if each.init and each.name not in given
    }
    return cls(**values, **given)
