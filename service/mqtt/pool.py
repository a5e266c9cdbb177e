"""The per-process pool of MQTT links: one flow in flight per link, bounded waits for a free one.

A slot holds one link. A request takes an idle slot whose link is ready, runs its flow, and
gives it back; a link that timed out, lost its connection or saw an unexpected message is closed
and replaced by a fresh one (new client ID, clean session) before the slot serves again.

The request gets the idle link that has been quiet longest in the format its next flow uses, and
waits (within the pool wait) while every idle link is still inside its quiet window: a late
duplicate that arrives meanwhile finds the link idle, dirties it, and it is replaced before it
serves (docs/correlation.md).
"""

from __future__ import annotations

import logging
import threading
import time
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
        self._links: list[MqttLink] = []
        self._busy: set[int] = set()
        self._closed = False
        # This process's share of the pool gauges (summed over live workers).
        self._ready_gauge = metrics.pool_connections.labels("ready")
        self._busy_gauge = metrics.pool_connections.labels("busy")
        for slot in range(settings.pool_size):
            self._links.append(self._new_link(slot, "initial"))

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
            ready = sum(1 for link in self._links if link.ready and not link.dirty)
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
            try:
                link.end_flow()
                if link.dirty:
                    self._replace(slot, link)
            finally:
                with self._changed:
                    self._busy.discard(slot)
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
                for slot, link in enumerate(self._links):
                    if slot in self._busy:
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
                # Woken by a link that gets free or ready, or when the quietest one is quiet.
                self._changed.wait(min(remaining, max(0.0, best_quiet_at - now)))
            any_ready = any(link.ready and not link.dirty for link in self._links)
        if any_ready:
            raise PoolExhausted(
                f"all {len(self._links)} MQTT connections were busy for "
                f"{self.settings.pool_wait_seconds:g} s; retry shortly",
                retry_after=1,
            )
        reasons = sorted({link.last_error or "connecting" for link in self._links})
        raise BrokerUnavailable(
            "no connection to AWS IoT is ready (" + "; ".join(reasons) + ")", step="connect", retry_after=2
        )

    def _replace(self, slot: int, link: MqttLink) -> None:
        with self._changed:
            if self._links[slot] is not link:
                return  # already replaced
            if not self._closed:
                try:
                    self._links[slot] = self._new_link(slot, "replacement")
                except Exception:
                    # The old link stays in the slot, dirty, so the next acquire tries again.
                    log.exception("slot %d: cannot make a new connection", slot)
                    return
                metrics.connection_replacements.labels(link.dirty_reason or "unknown").inc()
                self._publish_gauges()
                log.info(
                    "%s: replaced by a fresh connection so no late answer can reach the next request",
                    link.client_id,
                )
        # Closing joins paho's loop thread; do it off the request path.
        threading.Thread(target=link.close, name=f"close-{link.client_id}", daemon=True).start()

    def readiness(self) -> dict[str, Any]:
        with self._changed:
            links = [link.describe() | {"busy": slot in self._busy} for slot, link in enumerate(self._links)]
        ready = sum(1 for link in links if link["state"] == "ready" and not link["dirty"])
        return {
            "ready": ready > 0 and not self._closed,
            "size": len(links),
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
            links = list(self._links)
            self._publish_gauges()
        # Disconnect all first, then join: one link stuck mid-connect must not hold up the rest
        # past gunicorn's kill deadline.
        closers = [threading.Thread(target=link.close, daemon=True) for link in links]
        for closer in closers:
            closer.start()
        for closer in closers:
            closer.join(self.settings.connect_timeout_seconds + 1)
