"""One connection's subscriptions: AWS IoT's limits on them, and matching topics against them."""

from __future__ import annotations

from collections import OrderedDict

from emulator.mqtt import packets5, topics
from emulator.mqtt.errors import ProtocolError
from emulator.mqtt.limits import Limits
from emulator.mqtt.packets import Subscribe


class Subscriptions:
    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.filters: OrderedDict[str, int] = OrderedDict()  # filter -> granted QoS
        self.no_local: set[str] = set()  # MQTT 5 filters that skip the client's own publishes

    def subscribe(self, subscribe: Subscribe, *, mqtt5: bool) -> tuple[list[int], list[str]]:
        """Grant or refuse each filter: (MQTT 5 reason codes or granted QoS, refusal reasons).

        A 3.1.1 client with an invalid filter raises ProtocolError: its SUBACK cannot say why,
        and AWS disconnects it.
        """
        codes: list[int] = []
        refused: list[str] = []
        for topic_filter, requested_qos in subscribe.filters:
            refusal = self._refusal(subscribe, topic_filter, mqtt5=mqtt5)
            if refusal is not None:
                code, why = refusal
                codes.append(code)
                refused.append(f"{topic_filter[:60]!r}: {why}")
                continue
            granted = min(requested_qos, 1)  # QoS 2 is granted as 1, as AWS does
            self.filters[topic_filter] = granted
            if topic_filter in subscribe.no_local:
                self.no_local.add(topic_filter)
            else:
                self.no_local.discard(topic_filter)
            codes.append(granted)
        return codes, refused

    def _refusal(self, subscribe: Subscribe, topic_filter: str, *, mqtt5: bool) -> tuple[int, str] | None:
        """Why AWS would refuse this filter (MQTT 5 reason code, text), or None."""
        try:
            topics.check_topic_filter(
                topic_filter, max_bytes=self.limits.max_topic_bytes, max_slashes=self.limits.max_topic_slashes
            )
        except ProtocolError as exc:
            if not mqtt5:
                raise
            return packets5.TOPIC_FILTER_INVALID, str(exc)
        if subscribe.properties.subscription_identifiers:
            # AWS IoT Core does not support subscription identifiers.
            return (
                packets5.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                "subscription identifiers are not supported",
            )
        if len(subscribe.filters) > self.limits.max_filters_per_subscribe:
            return (
                packets5.QUOTA_EXCEEDED,
                f"more than {self.limits.max_filters_per_subscribe} filters in one SUBSCRIBE",
            )
        if mqtt5 and topic_filter.startswith("$share/"):
            # AWS IoT Core serves shared subscriptions; this emulator does not (documented in
            # docs/emulator.md), and says so with the MQTT 5 code rather than mis-route.
            return (
                packets5.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,
                "shared subscriptions are not supported by the emulator",
            )
        if topic_filter not in self.filters and len(self.filters) >= self.limits.max_subscriptions:
            return (packets5.QUOTA_EXCEEDED, f"limit of {self.limits.max_subscriptions} subscriptions")
        return None

    def unsubscribe(self, topic_filter: str) -> bool:
        """Remove a filter; report whether it existed."""
        self.no_local.discard(topic_filter)
        return self.filters.pop(topic_filter, None) is not None

    def clear(self) -> None:
        self.filters.clear()
        self.no_local.clear()

    def granted_qos(self, topic: str, *, own_publish: bool = False) -> int | None:
        """The highest QoS of the filters matching `topic`, or None."""
        best: int | None = None
        for topic_filter, qos in self.filters.items():
            if own_publish and topic_filter in self.no_local:
                continue
            if topics.matches(topic_filter, topic) and (best is None or qos > best):
                best = qos
        return best
