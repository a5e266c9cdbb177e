"""The per-process pool of MQTT links: one flow in flight per link, bounded waits for a free one.

A slot holds one link. A request takes an idle slot whose link is ready, runs its flow, and
gives it back; a link that timed out, lost its connection or saw an unexpected message is closed
and replaced by a fresh one (new client ID, clean session) before the slot serves again. Links
are made and closed on threads of their own, never on a request's path.

The request gets the idle link that has been quiet longest in the format its next flow uses, and
waits (within the pool wait) while every idle link is still inside its quiet window: a late
duplicate that arrives meanwhile finds the link idle, dirties it, and it is replaced before it
serves (docs/correlation.md).

A fault costs only its own request: while links are impaired (a flow waiting for an answer
longer than `pool_spare_after_seconds`, which may never come; a link being replaced or
reconnecting) and a request finds no link to take, the pool opens spare links, as many as
are impaired and at most `pool_spares`, at most `pool_spares` a second, and only while some
link is ready (a broker that is down gets no extra connections). Spares beyond what the
impairment calls for are closed when idle. docs/correlation.md, "Spare connections".
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from service import metrics
from service.config import Settings
from service.errors import BrokerUnavailable, PoolExhausted, ProvisioningRejected
from service.mqtt.link import MqttLink
from service.mqtt.sigv4 import AwsCredentials

log = logging.getLogger("service.pool")


class ConnectionPool:
    def __init__(
        self,
        settings: Settings,
        credentials: Callable[[], AwsCredentials] | None,
        *,
        base_filters: tuple[str, ...],
    ) -> None:
        self.settings = settings
        self._base_filters = base_filters
        self._credentials = credentials
        self._changed = threading.Condition()
        self._links: dict[int, MqttLink] = {}
        self._busy: set[int] = set()
        self._opening: set[int] = set()  # slots whose new link is being made on a thread
        self._new_spares: set[int] = set()  # spares not ready yet: capacity on its way, not lost
        self._next_slot = settings.pool_size
        self._spares_opened: deque[float] = deque()  # when, over the last second (the rate bound)
        self._closed = False
        # This process's share of the pool gauges (summed over live workers).
        self._ready_gauge = metrics.pool_connections.labels("ready")
        self._busy_gauge = metrics.pool_connections.labels("busy")
        for slot in range(settings.pool_size):
            self._links[slot] = self._new_link(slot, "initial")

    def _new_link(self, slot: int, reason: str) -> MqttLink:
        link = MqttLink(self.settings, slot, self._credentials, self._notify, self._base_filters)
        link.start()
        metrics.connections_opened.labels(reason).inc()
        return link

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()
            self._publish_gauges()

    def _publish_gauges(self) -> None:
        """Called with the lock held, whenever a link or a slot changes."""
        if self._closed:
            ready = 0
        else:
            ready = sum(1 for link in self._links.values() if link.ready and not link.dirty)
        self._ready_gauge.set(ready)
        self._busy_gauge.set(len(self._busy))

    @contextmanager
    def connection(self, *, deadline: float) -> Iterator[MqttLink]:
        """Hold one ready link for one flow; replace it afterwards if it is no longer clean."""
        waited = time.monotonic()
        try:
            slot = self._acquire(deadline)
        finally:
            metrics.pool_wait.observe(time.monotonic() - waited)
        link = self._links[slot]
        link.begin_flow()
        try:
            yield link
        except ProvisioningRejected:
            raise  # AWS answered on the topic we expected: the link is still in step
        except BaseException:
            # A timeout, a loss, an answer that was not ours, a bug: an answer may still be on
            # its way to this link, so it must not serve anyone else.
            link.spoil("flow-failed")
            raise
        finally:
            link.end_flow()
            with self._changed:
                self._busy.discard(slot)
                if link.dirty:
                    self._replace(slot, link)
                self._retire_excess(time.monotonic())
                self._changed.notify_all()
                self._publish_gauges()

    def _acquire(self, deadline: float) -> int:
        wait_until = min(deadline, time.monotonic() + self.settings.pool_wait_seconds)
        with self._changed:
            while True:
                if self._closed:
                    raise BrokerUnavailable("the service is shutting down", step="connect", retry_after=5)
                best: int | None = None
                best_quiet_at = float("inf")
                for slot, link in list(self._links.items()):
                    if slot in self._busy or slot in self._opening:
                        continue
                    if link.dirty:
                        # Dirtied while idle (a stray or repeated answer arrived after its flow).
                        self._replace(slot, link)
                    elif link.ready and (quiet_at := link.quiet_at()) < best_quiet_at:
                        best, best_quiet_at = slot, quiet_at
                now = time.monotonic()
                if best is not None and best_quiet_at <= now:
                    self._busy.add(best)
                    self._publish_gauges()
                    return best
                remaining = wait_until - now
                if remaining <= 0:
                    break
                self._open_spares(now)
                # Woken by a link that gets free or ready, when the quietest one is quiet, or
                # when a waiting flow crosses the spare threshold.
                wake = min(remaining, max(0.0, best_quiet_at - now), self._next_impairment(now) - now)
                self._changed.wait(max(0.001, wake))
            any_ready = any(link.ready and not link.dirty for link in self._links.values())
        if any_ready:
            raise PoolExhausted(
                f"all {len(self._links)} MQTT connections were busy for "
                f"{self.settings.pool_wait_seconds:g} s; retry shortly",
                retry_after=1,
            )
        reasons = sorted({link.last_error or "connecting" for link in self._links.values()})
        raise BrokerUnavailable(
            "no connection to AWS IoT is ready (" + "; ".join(reasons) + ")", step="connect", retry_after=2
        )

    # -- capacity that faults hold: spares ----------------------------------------------------

    def _impaired(self, now: float) -> int:
        """Links that cannot serve a healthy request soon (called with the lock held)."""
        spare_after = self.settings.pool_spare_after_seconds
        count = 0
        for slot, link in self._links.items():
            if link.ready:
                self._new_spares.discard(slot)
            if slot in self._opening or link.closed:
                count += 1  # being replaced
            elif slot in self._busy:
                since = link.answer_wait_since
                count += since is not None and now - since >= spare_after  # an answer may never come
            elif (not link.ready and slot not in self._new_spares) or link.dirty:
                count += 1  # reconnecting, or about to be replaced (a spare's first connect is not)
        return count

    def _next_impairment(self, now: float) -> float:
        """When the next busy link's wait for an answer crosses the spare threshold."""
        spare_after = self.settings.pool_spare_after_seconds
        crossings = [
            since + spare_after
            for slot in self._busy
            if (since := self._links[slot].answer_wait_since) is not None and since + spare_after > now
        ]
        return min(crossings, default=float("inf"))

    def _wanted_links(self, now: float) -> int:
        return self.settings.pool_size + min(self.settings.pool_spares, self._impaired(now))

    def _open_spares(self, now: float) -> None:
        """Called with the lock held by a request that found no link to take."""
        if not any(link.ready for link in self._links.values()):
            return  # the broker is unreachable or still being reached: more links would not help
        while self._spares_opened and now - self._spares_opened[0] >= 1.0:
            self._spares_opened.popleft()
        slots = set(self._links) | self._opening
        missing = self._wanted_links(now) - len(slots)
        allowed = self.settings.pool_spares - len(self._spares_opened)
        for _ in range(max(0, min(missing, allowed))):
            slot, self._next_slot = self._next_slot, self._next_slot + 1
            self._spares_opened.append(now)
            self._new_spares.add(slot)
            self._start_link(slot, "spare", None)

    def _retire_excess(self, now: float) -> None:
        """Close idle links beyond what the impairment calls for (called with the lock held)."""
        excess = len(set(self._links) | self._opening) - self._wanted_links(now)
        idle = [s for s in self._links if s not in self._busy and s not in self._opening]
        # Links that cannot serve go first, then the newest slots.
        idle.sort(key=lambda s: (self._links[s].ready and not self._links[s].dirty, -s))
        for slot in idle[: max(0, excess)]:
            link = self._links.pop(slot)
            self._new_spares.discard(slot)
            log.info("%s: spare capacity no longer needed; closing it", link.client_id)
            threading.Thread(target=link.close, name=f"close-{link.client_id}", daemon=True).start()

    # -- making and replacing links, off the request path -------------------------------------

    def _replace(self, slot: int, link: MqttLink) -> None:
        """Called with the lock held: a fresh link for the slot, made and swapped in on a thread."""
        if self._links.get(slot) is link and slot not in self._opening and not self._closed:
            metrics.connection_replacements.labels(link.dirty_reason or "unknown").inc()
            self._start_link(slot, "replacement", link)

    def _start_link(self, slot: int, reason: str, old: MqttLink | None) -> None:
        self._opening.add(slot)
        threading.Thread(
            target=self._make_link, args=(slot, reason, old), name=f"open-slot-{slot}", daemon=True
        ).start()

    def _make_link(self, slot: int, reason: str, old: MqttLink | None) -> None:
        try:
            link: MqttLink | None = self._new_link(slot, reason)
        except Exception:
            log.exception("slot %d: cannot make a new connection", slot)
            link = None
        with self._changed:
            self._opening.discard(slot)
            if link is None:
                self._new_spares.discard(slot)
            if link is not None and not self._closed and (old is None or self._links.get(slot) is old):
                self._links[slot] = link
                if old is not None:
                    log.info(
                        "%s: replaced by a fresh connection so no late answer can reach the next request",
                        old.client_id,
                    )
                link = None
            elif old is not None:
                old = None  # left in the slot, still dirty: the next acquire tries again
            self._changed.notify_all()
            self._publish_gauges()
        for leftover in (old, link):  # closing joins paho's loop thread
            if leftover is not None:
                leftover.close()

    def readiness(self) -> dict[str, Any]:
        with self._changed:
            links = [
                link.describe() | {"busy": slot in self._busy} for slot, link in sorted(self._links.items())
            ]
        ready = sum(1 for link in links if link["state"] == "ready" and not link["dirty"])
        return {
            "ready": ready > 0 and not self._closed,
            "size": self.settings.pool_size,
            "spares": max(0, len(links) - self.settings.pool_size),
            "readyConnections": ready,
            "busyConnections": len(self._busy),
            "connections": links,
        }

    def close(self, *, drain_seconds: float = 0.0) -> None:
        """Stop taking requests, let in-flight flows finish (bounded), then disconnect all."""
        deadline = time.monotonic() + drain_seconds
        with self._changed:
            self._closed = True
            while self._busy and time.monotonic() < deadline:
                self._changed.wait(max(0.0, deadline - time.monotonic()))
            links = list(self._links.values())
            self._publish_gauges()
        # Disconnect all first, then join: one link stuck mid-connect must not hold up the rest
        # past gunicorn's kill deadline.
        closers = [threading.Thread(target=link.close, daemon=True) for link in links]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(self.settings.connect_timeout_seconds + 1)
