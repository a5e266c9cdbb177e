"""Which answer belongs to which flow on a link, when AWS's answers carry no correlation token.

A late duplicate of the previous flow's answer would look like the current flow's. Consecutive
flows on a link therefore alternate between the JSON and the CBOR topics, and a format is used
again only after it has been quiet for `quiet_window_seconds` (the pool waits for that): a
duplicate from the previous flow arrives on a topic the current flow does not expect, and one
from an earlier flow in the same format had to be later than a whole flow plus the window. A
message showing that happened fails the flow (`AnswerUnproven`) instead of guessing; so does a
link that saw a message nobody waited for before its flow began. docs/correlation.md.

`FlowCorrelation` is the part of `MqttLink` that keeps this state; every method here is called
with the link's lock held unless it says otherwise.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from service import metrics
from service.config import Settings
from service.errors import AnswerUnproven
from service.mqtt import payloads
from service.mqtt.payloads import FORMATS, Format

log = logging.getLogger("service.mqtt")


@dataclass
class Answer:
    outcome: str  # "accepted" or "rejected"
    body: dict[str, Any] = field(repr=False)  # may hold a private key and a token


class Lost(Exception):
    """The connection dropped while a flow waited (turned into a service error by the caller)."""


class Unproven(Exception):
    """A message older than the quiet window arrived in this flow's format while it waited."""


class FlowCorrelation:
    """Format alternation, the quiet window and answer acceptance for one link."""

    # Provided by MqttLink.
    settings: Settings
    client_id: str
    dirty: bool
    dirty_reason: str | None
    _lock: threading.Lock
    _changed: threading.Condition

    def _init_correlation(self) -> None:
        self._expected: tuple[str, str] | None = None
        # The flow's request in flight: paho marks it published once its loop thread has written
        # it to the socket, the thread that also delivers messages (docs/correlation.md).
        self._request: mqtt.MQTTMessageInfo | None = None
        self._answer: Answer | Lost | Unproven | None = None
        self._recent_certificate_ids: deque[str] = deque(maxlen=32)
        # The flow holding the link: its format, the request topics it published on, and why
        # an answer it waits for could not be proven to be its own (None: nothing seen).
        self.flow_format: Format | None = None
        self._flow_requests: set[str] = set()
        self._unproven: str | None = None
        self._next_format: Format = FORMATS[0]
        self._format_ended: dict[str, float] = {fmt: float("-inf") for fmt in FORMATS}

    def spoil(self, reason: str) -> None:
        """Mark the link as not to be reused (the first reason is kept)."""
        if not self.dirty:
            self.dirty_reason = reason
        self.dirty = True

    def quiet_at(self) -> float:
        """When the next flow's format will have been quiet for the window (time.monotonic)."""
        return self._format_ended[self._next_format] + self.settings.quiet_window_seconds

    def begin_flow(self) -> Format:
        """Start a flow (the pool calls this when it hands the link out); returns its format.

        Takes the lock itself.
        """
        with self._lock:
            self.flow_format = self._next_format
            self._flow_requests = set()
            self._unproven = None
            if self.dirty:
                # A message nobody waited for arrived after the pool chose this link and before
                # the flow began: it may be in this flow's format and older than the quiet
                # window, and nothing recorded that. Refuse before publishing.
                self._unproven = "a message nobody waited for arrived just before this flow began"
            return self.flow_format

    def end_flow(self) -> None:
        """The flow gave the link back: its format starts its quiet window now (takes the lock)."""
        with self._lock:
            if self.flow_format is not None:
                self._format_ended[self.flow_format] = time.monotonic()
                self._next_format = payloads.other(self.flow_format)
            self.flow_format = None
            self._expected = None

    def _take_answer(self, message: mqtt.MQTTMessage) -> bool:
        """Hand an expected answer to the waiting flow; False when the link became dirty.

        Takes the lock itself (paho's loop thread).
        """
        with self._lock:
            expected = self._expected
            expected_topic = expected is not None and message.topic in expected and self._answer is None
            if expected_topic and not self._request_written():
                # Before the request was written the broker cannot have answered it: over one
                # connection it answers only what it has read. Not ours; keep waiting for ours.
                self._spoil_by_message()
                metrics.answers_before_request.inc()
                log.warning(
                    "%s: a message on %s arrived before this flow's request was written: not its "
                    "answer; the connection will be replaced after the flow",
                    self.client_id,
                    message.topic,
                )
                return False
            if expected_topic:
                assert expected is not None
                body = payloads.decode(bytes(message.payload), payloads.format_of(message.topic) or "json")
                outcome = "accepted" if message.topic == expected[0] else "rejected"
                certificate_id = body.get("certificateId") if body is not None else None
                if outcome == "accepted" and certificate_id in self._recent_certificate_ids:
                    # A repeated answer to an earlier flow on this link, not ours.
                    self._spoil_by_message()
                    log.warning("%s: repeated certificate answer ignored", self.client_id)
                    return False
                if outcome == "accepted" and isinstance(certificate_id, str):
                    self._recent_certificate_ids.append(certificate_id)
                self._answer = Answer(outcome, body if body is not None else {"_unparseable": True})
                self._changed.notify_all()
                return True
            # Late, duplicate or foreign: whatever it is, this link has answers in flight that
            # nobody waits for, so it will not serve again. The payload may hold a key: never log it.
            self._spoil_by_message()
            fmt = payloads.format_of(message.topic)
            flow_format = self.flow_format
            if fmt is not None and fmt == flow_format:
                if payloads.request_topic_of(message.topic) not in self._flow_requests:
                    # Not this flow's (it asked nothing there), and the previous flow used the
                    # other format: older than the quiet window. An answer this flow waits for
                    # in this format could be that late too; refuse it rather than guess.
                    self._unproven = f"a message older than the quiet window arrived on {message.topic}"
                    if expected is not None and self._answer is None:
                        self._answer = Unproven()
                        self._changed.notify_all()
                    log.warning("%s: %s; the flow is refused", self.client_id, self._unproven)
                else:  # most likely a repeat of this flow's own earlier answer
                    log.warning(
                        "%s: unexpected message on %s during its flow; the connection will be replaced",
                        self.client_id,
                        message.topic,
                    )
            else:
                # The age tells how late duplicates come (what quiet_window_seconds must cover).
                age = time.monotonic() - self._format_ended[fmt] if fmt is not None else float("inf")
                log.warning(
                    "%s: unexpected message on %s, %.0f ms after the last flow in that format "
                    "ended; the connection will be replaced",
                    self.client_id,
                    message.topic,
                    age * 1000,
                )
            return False

    def _request_written(self) -> bool:
        """Called with the lock held, on paho's loop thread: has the request left for the broker?"""
        return self._request is not None and self._request.is_published()

    def _spoil_by_message(self) -> None:
        """Called with the lock held: a message nobody waited for arrived."""
        if not self.dirty:
            metrics.duplicates_detected.inc()
        self.spoil("unexpected-message")

    def _refusal(self, step: str) -> AnswerUnproven:
        self.spoil("answer-unproven")
        metrics.answers_unproven.inc()
        return AnswerUnproven(
            f"an answer on this connection could not be proven to be this request's ({self._unproven}); "
            "nothing was handed out; retry",
            step=step,
            retry_after=1,
        )
