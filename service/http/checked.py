"""What a view reads, checked by its marshmallow schema: a body or a query string loads into a
dict or is refused as problem+json (422, every broken rule named: service.http.problems)."""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from flask import request
from marshmallow import Schema, ValidationError

from service.errors import NotFound
from service.http import context
from service.http.body import read_json_object
from service.http.problems import rules_broken
from service.text import refuse_unusable

T = TypeVar("T")


def load(schema: Schema, data: Any) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = schema.load(data)
    except ValidationError as invalid:
        raise rules_broken(invalid.messages_dict) from None
    return loaded


def body(kind: type[Schema], max_bytes: int | None = None) -> dict[str, Any]:
    """The JSON object in the body (at most PROVISIONER_MAX_BODY_BYTES unless `max_bytes`), loaded."""
    limit = context.settings().max_body_bytes if max_bytes is None else max_bytes
    return load(_schema(kind), read_json_object(limit))


def query(kind: type[Schema]) -> dict[str, Any]:
    arguments = request.args.to_dict()
    refuse_unusable(arguments)
    return load(_schema(kind), arguments)


def issued(find: Callable[[str], T | None], given: str, form: re.Pattern[str], field: str, what: str) -> T:
    """The record `find` has under the id in the path, else 404 (422 for text no id can hold)."""
    refuse_unusable({field: given})
    # Issued ids all have this form: anything else is looked up nowhere, and echoed only if it has
    # it (a whole API key pasted by mistake holds its secret).
    well_formed = form.fullmatch(given) is not None
    record = find(given) if well_formed else None
    if record is None:
        shown = repr(given) if well_formed else "like that"
        raise NotFound(f"no {what} with id {shown}")
    return record


@functools.cache
def _schema(kind: type[Schema]) -> Schema:
    # Built once (building one costs ~0.1 ms a request); a schema holds no per-call state.
    return kind()


def into(kind: type[T], data: Mapping[str, Any], **given: Any) -> T:
    """The dataclass `kind` made of what was loaded: each of its fields that `data` names (by the
    field's name, as the schema loads it), unless `given` gives it."""
    names = [f.name for f in dataclasses.fields(kind)]  # type: ignore[arg-type]
    return kind(**{**{name: data[name] for name in names if name in data}, **given})
