"""Which answer belongs to which flow on a link, when AWS's answers carry no correlation token.

A late duplicate of the previous flow's answer would look like the current flow's. Consecutive
flows on a link therefore alternate between the JSON and the CBOR topics, and a format is used
again only after it has been quiet for `quiet_window_seconds` (the pool waits for that): a
duplicate from the previous flow arrives on a topic the current flow does not expect, and one
from an earlier flow in the same format had to be later than a whole flow plus the window. A
message showing that happened fails the flow (`AnswerUnproven`) instead of guessing; so does a
link that saw a message nobody waited for before its flow began. docs/correlation.md.

`Correlation` keeps this state for one link, which owns it and calls every method with its own
lock held (paho's loop thread takes messages, request threads expect and wait): the correlation
takes no lock of its own and its state is written only here.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt

from service import metrics
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


class Correlation:
    """Format alternation, the quiet window and answer acceptance for the flows of one link.

    A flow: `begin` (the pool hands the link out), then per request `expect` (before publishing),
    `published` (the request is queued), `verdict` (what arrived, while waiting), `done`; `take`
    on every message and `lose` when the connection drops; `end` when the link is given back.
    """

    def __init__(self, client_id: str, quiet_window_seconds: float) -> None:
        self._client_id = client_id
        self._quiet_window = quiet_window_seconds
        self._expected: tuple[str, str] | None = None
        # The flow's request in flight: paho marks it published once its loop thread has written
        # it to the socket, the thread that also delivers messages (docs/correlation.md).
        self._request: mqtt.MQTTMessageInfo | None = None
        self._answer: Answer | Lost | Unproven | None = None
        self._recent_certificate_ids: deque[str] = deque(maxlen=32)
        # The flow holding the link: its format, the request topics it published on, and why
        # an answer it waits for could not be proven to be its own (None: nothing seen).
        self._flow_format: Format | None = None
        self._flow_requests: set[str] = set()
        self._unproven: str | None = None
        self._next_format: Format = FORMATS[0]
        self._format_ended: dict[str, float] = {fmt: float("-inf") for fmt in FORMATS}

    @property
    def flow_format(self) -> Format | None:
        return self._flow_format

    @property
    def next_format(self) -> Format:
        return self._next_format

    @property
    def unproven(self) -> str | None:
        """Why an answer for this flow could not be proven to be its own (None: nothing seen)."""
        return self._unproven

    def quiet_at(self) -> float:
        """When the next flow's format will have been quiet for the window (time.monotonic)."""
        return self._format_ended[self._next_format] + self._quiet_window

    def begin(self, *, link_dirty: bool) -> Format:
        """Start a flow; returns its format."""
        self._flow_format = self._next_format
        self._flow_requests = set()
        self._unproven = None
        if link_dirty:
            # A message nobody waited for arrived after the pool chose this link and before
            # the flow began: it may be in this flow's format and older than the quiet
            # window, and nothing recorded that. Refuse before publishing.
            self._unproven = "a message nobody waited for arrived just before this flow began"
        return self._flow_format

    def end(self) -> None:
        """The flow gave the link back: its format starts its quiet window now."""
        if self._flow_format is not None:
            self._format_ended[self._flow_format] = time.monotonic()
            self._next_format = payloads.other(self._flow_format)
        self._flow_format = None
        self._expected = self._request = None

    def expect(self, topic: str, answers: tuple[str, str]) -> None:
        """The flow is about to publish on `topic` and wait for `answers` (accepted, rejected)."""
        self._flow_requests.add(topic)
        self._expected, self._answer = answers, None

    def published(self, request: mqtt.MQTTMessageInfo) -> None:
        """The request is queued for paho's loop thread, which marks it once it is written."""
        self._request = request

    def verdict(self) -> Answer | Lost | Unproven | None:
        """What arrived for the request so far (None: nothing yet)."""
        if self._answer is None or isinstance(self._answer, Lost | Unproven):
            return self._answer
        return Unproven() if self._unproven is not None else self._answer

    def done(self) -> None:
        """The request's wait is over (answered, timed out or failed)."""
        self._expected = self._request = None

    def lose(self, why: str) -> bool:
        """The connection dropped; True when a request was waiting (it now gets `Lost`)."""
        if self._expected is not None and self._answer is None:
            self._answer = Lost(why)
            return True
        return False

    def take(self, message: mqtt.MQTTMessage) -> bool:
        """Hand an expected answer to the waiting request: True. False: the message is no flow's
        answer (late, repeated, foreign) and the link must not serve again."""
        expected = self._expected
        if expected is None or message.topic not in expected or self._answer is not None:
            self._stray(message, waiting=expected is not None and self._answer is None)
            return False
        if not (self._request is not None and self._request.is_published()):
            # Before the request was written the broker cannot have answered it: over one
            # connection it answers only what it has read. Not ours; keep waiting for ours.
            metrics.answers_before_request.inc()
            log.warning(
                "%s: a message on %s arrived before this flow's request was written: not its "
                "answer; the connection will be replaced after the flow",
                self._client_id,
                message.topic,
            )
            return False
        body = payloads.decode(bytes(message.payload), payloads.format_of(message.topic) or "json")
        outcome = "accepted" if message.topic == expected[0] else "rejected"
        certificate_id = body.get("certificateId") if body is not None else None
        if outcome == "accepted" and certificate_id in self._recent_certificate_ids:
            # A repeated answer to an earlier flow on this link, not ours.
            log.warning("%s: repeated certificate answer ignored", self._client_id)
            return False
        if outcome == "accepted" and isinstance(certificate_id, str):
            self._recent_certificate_ids.append(certificate_id)
        self._answer = Answer(outcome, body if body is not None else {"_unparseable": True})
        return True

    def _stray(self, message: mqtt.MQTTMessage, *, waiting: bool) -> None:
        # Late, duplicate or foreign: whatever it is, this link has answers in flight that
        # nobody waits for, so it will not serve again. The payload may hold a key: never log it.
        fmt = payloads.format_of(message.topic)
        if fmt is not None and fmt == self._flow_format:
            if payloads.request_topic_of(message.topic) not in self._flow_requests:
                # Not this flow's (it asked nothing there), and the previous flow used the
                # other format: older than the quiet window. An answer this flow waits for
                # in this format could be that late too; refuse it rather than guess.
                self._unproven = f"a message older than the quiet window arrived on {message.topic}"
                if waiting:
                    self._answer = Unproven()
                log.warning("%s: %s; the flow is refused", self._client_id, self._unproven)
            else:  # most likely a repeat of this flow's own earlier answer
                log.warning(
                    "%s: unexpected message on %s during its flow; the connection will be replaced",
                    self._client_id,
                    message.topic,
                )
        else:
            # The age tells how late duplicates come (what quiet_window_seconds must cover).
            age = time.monotonic() - self._format_ended[fmt] if fmt is not None else float("inf")
            log.warning(
                "%s: unexpected message on %s, %.0f ms after the last flow in that format "
                "ended; the connection will be replaced",
                self._client_id,
                message.topic,
                age * 1000,
            )
