"""The outbox relay against real PostgreSQL and RabbitMQ: what commits is published, once."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any, ClassVar
from uuid import UUID

import pytest
from aio_pika.abc import AbstractExchange
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro.db import create_session_factory
from fastmicro.events import DomainEvent, Envelope
from fastmicro.messaging import Broker, BrokerUnavailable, Publisher
from fastmicro.outbox import OutboxMessage, OutboxRelay, outbox_table
from fastmicro.testing import catch_events
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from fastmicro.uow import OutboxUnitOfWork


class ThingHappened(DomainEvent):
    type: ClassVar[str] = "ThingHappened"
    source: ClassVar[str] = "kernel"

    thing_id: uuid.UUID
    run: str


class CountingPublisher(Publisher):
    """A publisher that counts the relay's attempts (each batch asks for the exchange first) and its publishes."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.attempts = 0
        self.published = 0

    async def exchange(self) -> AbstractExchange:
        self.attempts += 1
        return await super().exchange()

    async def publish_json(
        self,
        body: bytes,
        *,
        message_id: UUID,
        type: str,
        correlation_id: str | None,
        occurred_at: datetime,
        routing_key: str,
        headers: dict[str, Any] | None = None,
    ) -> None:
        await super().publish_json(
            body,
            message_id=message_id,
            type=type,
            correlation_id=correlation_id,
            occurred_at=occurred_at,
            routing_key=routing_key,
            headers=headers,
        )
        self.published += 1


@pytest.fixture
async def engine(database_factory: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await database_factory("outbox"))
    async with engine.begin() as conn:
        await conn.run_sync(outbox_table.create)
    yield engine
    await engine.dispose()


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    task = asyncio.create_task(relay.run())
    try:
        yield relay
    finally:
        relay.stop()
        await asyncio.wait_for(task, 10)


async def emit(engine: AsyncEngine, run: str, count: int = 1) -> list[Envelope]:
    async with OutboxUnitOfWork(create_session_factory(engine)) as uow:
        envelopes = [uow.emit(ThingHappened(thing_id=uuid.uuid4(), run=run)) for _ in range(count)]
        await uow.commit()
    return envelopes


def of_run(run: str) -> Callable[[Envelope], bool]:
    return lambda envelope: envelope.data.get("run") == run


async def unpublished(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        count = await conn.scalar(
            select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None))
        )
    return int(count or 0)


async def test_committed_event_is_published_once_with_the_contract_properties(
    engine: AsyncEngine, test_broker: Broker
) -> None:
    run = uuid.uuid4().hex
    async with (
        catch_events(test_broker, "kernel.ThingHappened") as catcher,
        running(OutboxRelay(engine, Publisher(test_broker))),
    ):
        [sent] = await emit(engine, run)
        [(envelope, message)] = await catcher.wait_for(of_run(run))
        await catcher.settle()
        assert len(catcher.matching(of_run(run))) == 1

    assert envelope == sent
    assert message.message_id == str(sent.id)
    assert message.type == "ThingHappened"
    assert message.content_type == "application/json"
    assert message.delivery_mode == 2  # persistent
    assert message.routing_key == "kernel.ThingHappened"
    assert await unpublished(engine) == 0


async def test_rolled_back_unit_of_work_publishes_nothing(engine: AsyncEngine, test_broker: Broker) -> None:
    run = uuid.uuid4().hex
    async with catch_events(test_broker, "kernel.#") as catcher, running(OutboxRelay(engine, Publisher(test_broker))):

        async def failing_use_case() -> None:
            async with OutboxUnitOfWork(create_session_factory(engine)) as uow:
                uow.emit(ThingHappened(thing_id=uuid.uuid4(), run=run))
                raise RuntimeError("the use case failed")

        with pytest.raises(RuntimeError):
            await failing_use_case()
        async with OutboxUnitOfWork(create_session_factory(engine)) as uow:
            uow.emit(ThingHappened(thing_id=uuid.uuid4(), run=run))  # left without commit
        marker = uuid.uuid4().hex
        await emit(engine, marker)
        await catcher.wait_for(of_run(marker))
        await catcher.settle()

    assert catcher.matching(of_run(run)) == []


async def test_notify_wakes_the_relay_without_waiting_for_the_poll(engine: AsyncEngine, test_broker: Broker) -> None:
    run = uuid.uuid4().hex
    relay = OutboxRelay(engine, Publisher(test_broker), poll_interval=600)  # polling cannot explain arrival
    async with catch_events(test_broker, "kernel.#") as catcher, running(relay):
        await asyncio.sleep(0.5)  # let the relay drain at start and go to sleep on LISTEN
        for _ in range(5):
            await emit(engine, run)
        await catcher.wait_for(of_run(run), count=5, within=10)


async def test_two_relays_share_a_burst_without_duplicates(engine: AsyncEngine, test_broker: Broker) -> None:
    run = uuid.uuid4().hex
    burst = 400
    publishers = [CountingPublisher(test_broker) for _ in range(2)]
    relays = [OutboxRelay(engine, publisher, batch_size=20) for publisher in publishers]
    async with catch_events(test_broker, "kernel.#") as catcher:
        await emit(engine, run, count=burst)  # committed before either relay starts: both find work
        async with running(relays[0]), running(relays[1]):
            await catcher.wait_for(of_run(run), count=burst, within=30)
            await catcher.settle()

    ids = [envelope.id for envelope, _ in catcher.matching(of_run(run))]
    assert len(ids) == len(set(ids)) == burst
    assert all(publisher.published > 0 for publisher in publishers), [p.published for p in publishers]
    assert sum(publisher.published for publisher in publishers) == burst


async def test_relay_backs_off_while_the_broker_is_down_and_delivers_after(
    engine: AsyncEngine, test_broker: Broker, tcp_proxy: ProxyFactory
) -> None:
    proxy = await tcp_proxy(test_broker.url)
    broker = Broker(proxy.url_for(test_broker.url), test_broker.topology)
    publisher = CountingPublisher(broker)
    relay = OutboxRelay(engine, publisher, max_backoff=1.0)
    run = uuid.uuid4().hex
    try:
        async with catch_events(test_broker, "kernel.#") as catcher, running(relay):
            await proxy.cut()
            await emit(engine, run, count=10)
            await asyncio.sleep(3)
            assert catcher.matching(of_run(run)) == []
            assert await unpublished(engine) == 10
            # Backing off, not spinning: at most a few attempts a second while the broker is away.
            assert 1 <= publisher.attempts <= 16, publisher.attempts
            assert await attempts_and_errors(engine) == [(0, None)] * 10  # never claimed while it was away
            await proxy.restore()
            await catcher.wait_for(of_run(run), count=10, within=30)
            await catcher.settle()
            assert len(catcher.matching(of_run(run))) == 10
    finally:
        await broker.close()
    assert await unpublished(engine) == 0


async def attempts_and_errors(engine: AsyncEngine) -> list[tuple[int, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(OutboxMessage.attempts, OutboxMessage.last_error).order_by(OutboxMessage.id))
        return [(attempts, error) for attempts, error in rows]


async def test_while_the_broker_is_down_the_relay_claims_and_marks_nothing(
    engine: AsyncEngine, test_broker: Broker, tcp_proxy: ProxyFactory
) -> None:
    """Once connected, the publisher's exchange is kept: an outage must still stop a batch before its claim."""
    proxy = await tcp_proxy(test_broker.url)
    broker = Broker(proxy.url_for(test_broker.url), test_broker.topology)
    relay = OutboxRelay(engine, Publisher(broker))
    run = uuid.uuid4().hex
    try:
        assert await relay.relay_batch() == 0  # connected: the exchange is opened and kept from here on
        await proxy.cut()
        async with asyncio.timeout(10):  # aio-pika sees the reset and starts reconnecting
            while broker.is_connected:
                await asyncio.sleep(0.05)
        await emit(engine, run, count=3)
        for _ in range(3):
            with pytest.raises(BrokerUnavailable):
                await relay.relay_batch()
        assert await attempts_and_errors(engine) == [(0, None)] * 3

        await proxy.restore()
        async with catch_events(test_broker, "kernel.#") as catcher, asyncio.timeout(30):
            while await unpublished(engine):  # aio-pika reconnects about once a second
                with contextlib.suppress(BrokerUnavailable):
                    await relay.relay_batch()
                await asyncio.sleep(0.1)
            await catcher.wait_for(of_run(run), count=3)
    finally:
        await broker.close()
    assert await attempts_and_errors(engine) == [(1, None)] * 3
