"""How many messages wait in a service's dead-letter and retry queues, asked of the broker at scrape time.

One channel per scrape and a passive declare per queue (the broker answers with the queue's
message count, nothing is created), the whole bounded by a timeout: a scrape while the broker is
away leaves the gauges at their last value and is never slowed past that bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Literal

import structlog

from fastmicro.messaging import Broker
from fastmicro.metrics import QUEUE_MESSAGES

log = structlog.get_logger(__name__)

Kind = Literal["dead", "retry"]


class QueueDepths:
    """The gauge `consumer_queue_messages{queue, kind}` for `queues`, refreshed by `refresh()`."""

    def __init__(self, broker: Broker, queues: Sequence[tuple[str, Kind]], *, timeout: float = 2.0) -> None:
        self._broker = broker
        self._queues = tuple(queues)
        self._timeout = timeout

    async def refresh(self) -> bool:
        """Ask the broker; returns whether every count was read (the gauges are left as they were otherwise)."""
        if not self._queues:
            return True
        counts: list[tuple[str, Kind, int]] = []
        try:
            async with asyncio.timeout(self._timeout):
                channel = await self._broker.channel(publisher_confirms=False)
                try:
                    for name, kind in self._queues:
                        queue = await channel.declare_queue(name, passive=True)
                        counts.append((name, kind, queue.declaration_result.message_count or 0))
                finally:
                    with contextlib.suppress(Exception):
                        await channel.close()
        except Exception as error:  # noqa: BLE001 - a figure we cannot read is left out, never an error
            log.debug("queue_depths_unavailable", error=str(error), error_type=type(error).__name__)
            return False
        for name, kind, count in counts:
            QUEUE_MESSAGES.labels(name, kind).set(count)
        return True
