"""Topic names and filters: validation against MQTT and AWS IoT limits, and matching.

Errors carry the MQTT 5 reason code an MQTT 5 client is told: 0x90 Topic Name invalid for a
topic, 0x8F Topic Filter invalid for a filter.
"""

from __future__ import annotations

from emulator.mqtt.errors import ProtocolError

TOPIC_NAME_INVALID = 0x90
TOPIC_FILTER_INVALID = 0x8F


def check_topic_name(topic: str, *, max_bytes: int, max_slashes: int) -> None:
    """Raise ProtocolError for a topic name a client may not publish to."""
    _check_common(topic, max_bytes=max_bytes, max_slashes=max_slashes, code=TOPIC_NAME_INVALID)
    if "+" in topic or "#" in topic:
        raise ProtocolError(f"topic {topic[:80]!r} contains a wildcard", TOPIC_NAME_INVALID)


def check_topic_filter(topic_filter: str, *, max_bytes: int, max_slashes: int) -> None:
    """Raise ProtocolError for an invalid topic filter (MQTT 3.1.1 section 4.7.1)."""
    _check_common(topic_filter, max_bytes=max_bytes, max_slashes=max_slashes, code=TOPIC_FILTER_INVALID)
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ProtocolError(
                f"filter {topic_filter[:80]!r}: '#' must be the last level alone", TOPIC_FILTER_INVALID
            )
        if "+" in level and level != "+":
            raise ProtocolError(
                f"filter {topic_filter[:80]!r}: '+' must occupy a whole level", TOPIC_FILTER_INVALID
            )


def _check_common(topic: str, *, max_bytes: int, max_slashes: int, code: int) -> None:
    if not topic:
        raise ProtocolError("empty topic", code)
    size = len(topic.encode("utf-8"))
    if size > max_bytes:
        raise ProtocolError(f"topic is {size} bytes; the limit is {max_bytes}", code)
    # AWS IoT: at most 7 slashes (8 levels); the reserved $aws/... prefix levels do not count
    # towards the limit for AWS's own topics, so count only the customer part of those.
    counted = topic
    if topic.startswith("$aws/"):
        counted = topic.split("/", 3)[-1] if topic.count("/") >= 3 else ""
    if counted.count("/") > max_slashes:
        raise ProtocolError(f"topic has more than {max_slashes} slashes", code)


def matches(topic_filter: str, topic: str) -> bool:
    """MQTT 3.1.1 section 4.7: wildcard match; `$`-topics are never matched by a leading wildcard."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels):
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == len(topic_levels)
