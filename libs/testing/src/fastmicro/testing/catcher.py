"""Await events on the bus: a temporary queue bound to the events exchange."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from aio_pika.abc import AbstractIncomingMessage

from fastmicro.events import Envelope
from fastmicro.messaging import Broker, declare_events_exchange

if TYPE_CHECKING:
    from aio_pika.abc import AbstractQueue

Received = tuple[Envelope, AbstractIncomingMessage]


class EventCatcher:
    """Collects every message routed to `routing_keys` while it is open."""

    def __init__(self, queue: AbstractQueue) -> None:
        self._queue = queue
        self.received: list[Received] = []
        self._arrived = asyncio.Condition()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        await message.ack()
        envelope = Envelope.model_validate_json(message.body)
        async with self._arrived:
            self.received.append((envelope, message))
            self._arrived.notify_all()

    def matching(self, predicate: Callable[[Envelope], bool]) -> list[Received]:
        return [item for item in self.received if predicate(item[0])]

    async def wait_for(
        self, predicate: Callable[[Envelope], bool], *, count: int = 1, within: float = 10.0
    ) -> list[Received]:
        """Wait until `count` received events match `predicate`; fail the test on timeout."""
        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: len(self.matching(predicate)) >= count)
        return self.matching(predicate)

    async def settle(self, seconds: float = 0.5) -> None:
        """Give late duplicates a chance to arrive before a test counts them."""
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def catch_events(broker: Broker, *routing_keys: str) -> AsyncIterator[EventCatcher]:
    channel = await broker.channel(publisher_confirms=False)
    try:
        exchange = await declare_events_exchange(channel, broker.topology)
        queue = await channel.declare_queue(exclusive=True, auto_delete=True)
        for key in routing_keys or ("#",):
            await queue.bind(exchange, key)
        catcher = EventCatcher(queue)
        await queue.consume(catcher._on_message)
        yield catcher
    finally:
        await channel.close()
