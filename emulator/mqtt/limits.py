"""The broker's limits: AWS IoT Core's by default, any others for a test."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """AWS IoT Core limits, enforced by default.

    AWS publishes them at https://docs.aws.amazon.com/general/latest/gr/iot-core.html
    (AWS IoT Core endpoints and quotas, message broker and protocol limits).
    """

    max_client_id_bytes: int = 128
    max_topic_bytes: int = 256
    max_topic_slashes: int = 7
    max_payload_bytes: int = 128 * 1024
    max_subscriptions: int = 50
    max_filters_per_subscribe: int = 8
    min_keep_alive: int = 30  # AWS treats lower values as 30
    max_keep_alive: int = 1200
    connect_timeout: float = 10.0  # time allowed between TCP accept and CONNECT
    # Not AWS's published numbers: bounds that keep one client from hurting the others.
    max_requests_in_flight: int = 16  # requests a reserved-topic handler serves per connection at once
    max_queued_bytes: int = 1024 * 1024  # unsent bytes before a non-reading client is dropped
