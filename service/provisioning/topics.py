"""The fleet-provisioning topics (AWS IoT's MQTT API, reference section 1), written out here once.

The service only speaks the JSON variants: answers are parsed with `json`, and a template's
answers come on `<request topic>/accepted` and `<request topic>/rejected`.
"""

from __future__ import annotations

CREATE_TOPIC = "$aws/certificates/create/json"
CREATE_FROM_CSR_TOPIC = "$aws/certificates/create-from-csr/json"


def template_topic(template_name: str) -> str:
    return f"$aws/provisioning-templates/{template_name}/provision/json"


def answer_topics(request_topic: str) -> tuple[str, str]:
    """(accepted, rejected) for a request topic."""
    return request_topic + "/accepted", request_topic + "/rejected"


# Subscribed on every (re)connect, before a link serves anyone (reference section 2).
CERTIFICATE_ANSWER_TOPICS: tuple[str, ...] = (
    *answer_topics(CREATE_TOPIC),
    *answer_topics(CREATE_FROM_CSR_TOPIC),
)
