"""One control-plane call's inputs, read and checked as botocore's model of AWS IoT declares them.

Each operation's input members sit in the URI (labels), the query string, headers or the JSON
body (`botocore/data/iot/2015-05-28/service-2.json`). Values that break a constraint of the
model are refused with InvalidRequestException in the words AWS's validation uses ("1 validation
error detected: Value '...' at 'thingName' failed to satisfy constraint: ...").

Paging tokens (`nextToken`, `marker`) are opaque to clients: standard base64 of the last key of
the page (the model's Marker pattern is `[A-Za-z0-9+/]+={0,2}`).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote

from emulator.control.http import Headers, HttpRequest
from emulator.errors import InvalidControlRequest

T = TypeVar("T")

# Patterns and lengths of the model's shapes the emulated operations take.
THING_NAME = (re.compile(r"[a-zA-Z0-9:_-]+"), 1, 128)
THING_TYPE_NAME = THING_NAME
CERTIFICATE_ID = (re.compile(r"(0x)?[a-fA-F0-9]+"), 64, 64)
POLICY_NAME = (re.compile(r"[\w+=,.@-]+", re.ASCII), 1, 128)
ATTRIBUTE_NAME = (re.compile(r"[a-zA-Z0-9_.,@/:#-]+"), 0, 128)
ATTRIBUTE_VALUE = (re.compile(r"[a-zA-Z0-9_.,@/:#=\[\]-]*"), 0, 800)
ENDPOINT_TYPE = (re.compile(r"[\s\S]*"), 0, 128)
MARKER = (re.compile(r"[A-Za-z0-9+/]+={0,2}"), 0, 1024)
MAX_RESULTS = 250  # RegistryMaxResults and PageSize: 1-250
MAX_TOKEN_CHARACTERS = 1024


@dataclass
class Call:
    """The inputs of one request, as the route table and the request give them."""

    operation: str
    labels: dict[str, str]
    query: dict[str, list[str]]
    headers: Headers
    body: dict[str, Any]
    region: str  # the signature's region: the account's ARNs name it

    @classmethod
    def read(cls, operation: str, labels: dict[str, str], request: HttpRequest, region: str) -> Call:
        return cls(
            operation, labels, parse_query(request.target), request.headers, parse_body(request.body), region
        )

    def label(self, name: str, shape: tuple[re.Pattern[str], int, int]) -> str:
        return constrained(self.labels[name], name, shape)

    def query_text(self, name: str, shape: tuple[re.Pattern[str], int, int] | None = None) -> str | None:
        values = self.query.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise InvalidControlRequest(f"query parameter {name} given {len(values)} times")
        return values[0] if shape is None else constrained(values[0], name, shape)

    def query_int(self, name: str, low: int, high: int) -> int | None:
        text = self.query_text(name)
        if text is None:
            return None
        if not re.fullmatch(r"-?[0-9]{1,19}", text):
            raise InvalidControlRequest(validation(text, name, "Member must be an integer"))
        value = int(text)
        if value < low:
            raise InvalidControlRequest(
                validation(text, name, f"Member must have value greater than or equal to {low}")
            )
        if value > high:
            raise InvalidControlRequest(
                validation(text, name, f"Member must have value less than or equal to {high}")
            )
        return value

    def query_bool(self, name: str) -> bool | None:
        text = self.query_text(name)
        if text is None:
            return None
        if text.lower() not in ("true", "false"):
            raise InvalidControlRequest(validation(text, name, "Member must be a boolean (true or false)"))
        return text.lower() == "true"

    def query_enum(self, name: str, values: Sequence[str]) -> str | None:
        text = self.query_text(name)
        if text is not None and text not in values:
            raise InvalidControlRequest(
                validation(text, name, f"Member must satisfy enum value set: [{', '.join(values)}]")
            )
        return text

    def header(self, name: str, member: str) -> str:
        values = self.headers.get_all(name)
        if not values or not values[0]:
            raise InvalidControlRequest(f"{member} is required (header {name})")
        if len(values) > 1:
            raise InvalidControlRequest(f"header {name} given {len(values)} times")
        return values[0]

    def body_text(self, name: str) -> str:
        value = self.body.get(name)
        if not isinstance(value, str) or not value:
            raise InvalidControlRequest(f"{name} is required and must be a non-empty string")
        return value

    def page_size(self, name: str, default: int) -> int:
        size = self.query_int(name, 1, MAX_RESULTS)
        return default if size is None else size

    def token(self, name: str, shape: tuple[re.Pattern[str], int, int] | None = None) -> Any:
        """The key a paging token carries, or None for the first page."""
        text = self.query_text(name, shape)
        if text is None or text == "":
            return None
        if len(text) > MAX_TOKEN_CHARACTERS:
            raise InvalidControlRequest(f"{name} is not a token this API returned")
        try:
            return json.loads(base64.b64decode(text, validate=True))
        except (binascii.Error, ValueError):
            raise InvalidControlRequest(f"{name} is not a token this API returned") from None


def encode_token(key: Any) -> str:
    return base64.b64encode(json.dumps(key, separators=(",", ":")).encode()).decode("ascii")


def page(
    items: list[T], key: Callable[[T], Any], after: Any, limit: int, *, descending: bool = False
) -> tuple[list[T], Any]:
    """One page of a short list sorted by `key` (descending if so): the items after key `after`,
    and the next page's key."""
    if after is not None:
        try:
            items = [item for item in items if (key(item) < after if descending else key(item) > after)]
        except TypeError:  # a token of another listing, or made up
            raise InvalidControlRequest("the paging token is not one this API returned") from None
    chosen = items[:limit]
    return chosen, (key(chosen[-1]) if len(items) > limit else None)


def constrained(value: str, name: str, shape: tuple[re.Pattern[str], int, int]) -> str:
    pattern, shortest, longest = shape
    if len(value) < shortest:
        raise InvalidControlRequest(
            validation(value, name, f"Member must have length greater than or equal to {shortest}")
        )
    if len(value) > longest:
        raise InvalidControlRequest(
            validation(value, name, f"Member must have length less than or equal to {longest}")
        )
    if not pattern.fullmatch(value):
        raise InvalidControlRequest(
            validation(value, name, f"Member must satisfy regular expression pattern: {pattern.pattern}")
        )
    return value


def validation(value: str, name: str, constraint: str) -> str:
    shown = value if len(value) <= 80 else value[:77] + "..."
    return (
        f"1 validation error detected: Value '{shown}' at '{name}' failed to satisfy constraint: {constraint}"
    )


def parse_query(target: str) -> dict[str, list[str]]:
    # Decoded with unquote, not unquote_plus: AWS's signers send a space as %20 and '+' as %2B.
    query: dict[str, list[str]] = {}
    for part in target.partition("?")[2].split("&"):
        if part:
            name, _, value = part.partition("=")
            query.setdefault(_decode(name, "query"), []).append(_decode(value, "query"))
    return query


def parse_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        parsed = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InvalidControlRequest(f"request body is not UTF-8: byte {exc.start}") from None
    except (ValueError, RecursionError) as exc:
        raise InvalidControlRequest(f"request body is not valid JSON: {str(exc)[:120]}") from None
    if not isinstance(parsed, dict):
        raise InvalidControlRequest(f"request body must be a JSON object, got {type(parsed).__name__}")
    return parsed


def decode_label(raw: str) -> str:
    return _decode(raw, "path")


def _decode(raw: str, where: str) -> str:
    try:
        text = unquote(raw, errors="strict") if "%" in raw else raw
    except UnicodeDecodeError:
        raise InvalidControlRequest(f"{where} is not UTF-8 once percent-decoded") from None
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        raise InvalidControlRequest(f"{where} contains a control character")
    return text
