"""The fleet-provisioning topics (AWS IoT fleet provisioning's MQTT API), written out here once.

Every operation has a JSON and a CBOR request topic with the same answer fields; a request's
answers come on `<request topic>/accepted` and `<request topic>/rejected` in its format. The
service uses both: consecutive flows on one connection alternate between them, so a late
duplicate of the previous flow's answer can only arrive on a topic the current flow does not
expect (docs/correlation.md). So each answer topic is subscribed in both formats.
"""

from __future__ import annotations

from service.mqtt.payloads import FORMATS, Format


def create_topic(fmt: Format) -> str:
    return f"$aws/certificates/create/{fmt}"


def create_from_csr_topic(fmt: Format) -> str:
    return f"$aws/certificates/create-from-csr/{fmt}"


def template_topic(template_name: str, fmt: Format) -> str:
    return f"$aws/provisioning-templates/{template_name}/provision/{fmt}"


def answer_topics(request_topic: str) -> tuple[str, str]:
    """(accepted, rejected) for a request topic."""
    return request_topic + "/accepted", request_topic + "/rejected"


def template_answer_filters(template_name: str) -> tuple[str, ...]:
    """A template's answer topics in both formats: 4 of AWS's 50 subscriptions per connection."""
    return tuple(f for fmt in FORMATS for f in answer_topics(template_topic(template_name, fmt)))


# Subscribed on every (re)connect, before a link serves anyone (AWS documents that a publish sent
# before the SUBACK may miss its answer): 8 filters, one SUBSCRIBE (AWS allows 8 per SUBSCRIBE).
CERTIFICATE_ANSWER_TOPICS: tuple[str, ...] = tuple(
    topic
    for fmt in FORMATS
    for request in (create_topic(fmt), create_from_csr_topic(fmt))
    for topic in answer_topics(request)
)
