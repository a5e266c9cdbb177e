"""The two payload formats of AWS IoT's fleet-provisioning API: JSON and CBOR.

Every operation has a `.../json` and a `.../cbor` request topic; the answer comes on the same
topic plus `/accepted` or `/rejected`, in the request's format, with the same fields (a CBOR map
with the same text keys). The link alternates the two per flow (docs/correlation.md), so it must
speak both.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import cbor2

Format = Literal["json", "cbor"]
FORMATS: tuple[Format, Format] = ("json", "cbor")


def other(fmt: Format) -> Format:
    return "cbor" if fmt == "json" else "json"


def request_topic_of(answer_topic: str) -> str:
    """`<request topic>` of `<request topic>/accepted` (or `/rejected`)."""
    return answer_topic.rsplit("/", 1)[0]


def format_of(topic: str) -> Format | None:
    """The format of a request topic or of one of its answer topics; None for any other topic."""
    parts = topic.split("/")
    if parts[-1] in ("accepted", "rejected"):
        parts.pop()
    last = parts[-1] if parts else ""
    return "json" if last == "json" else "cbor" if last == "cbor" else None


def encode(body: dict[str, Any], fmt: Format) -> bytes:
    return cbor2.dumps(body) if fmt == "cbor" else json.dumps(body).encode()


def decode(payload: bytes, fmt: Format) -> dict[str, Any] | None:
    """The answer as a dict, or None when it does not parse as an object of that format."""
    try:
        body = cbor2.loads(payload) if fmt == "cbor" else json.loads(payload)
    except (ValueError, cbor2.CBORDecodeError, RecursionError, MemoryError):
        return None
    return body if isinstance(body, dict) else None
