"""The engine's pool serves its waiters in the order they came, and loses nothing to a waiter that gave up."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.util import greenlet_spawn
from sqlalchemy.util.queue import Empty, Full

from fastmicro.db import create_engine
from fastmicro.pool import FairAsyncQueuePool, FairQueue
from fastmicro.settings import ServiceSettings
from fastmicro.testing.plugin import DatabaseFactory


async def get(queue: FairQueue[str], *, within: float | None = 5.0) -> str:
    """`queue.get` as the pool calls it: in a greenlet, blocking."""
    item: str = await greenlet_spawn(queue.get, True, within)
    return item


async def waiting(queue: FairQueue[str], count: int) -> None:
    """Until `count` getters wait on `queue` (each has run up to its await): a bound, not a sleep."""
    async with asyncio.timeout(5):
        while queue.waiters < count:
            await asyncio.sleep(0)


async def two_waiters(queue: FairQueue[str]) -> tuple[asyncio.Task[str], asyncio.Task[str]]:
    """Two getters, waiting in this order."""
    first = asyncio.create_task(get(queue))
    await waiting(queue, 1)
    second = asyncio.create_task(get(queue))
    await waiting(queue, 2)
    return first, second


async def test_waiters_are_served_in_the_order_they_came_and_a_newcomer_waits_its_turn() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=2)
    first, second = await two_waiters(queue)

    queue.put("a")
    newcomer = asyncio.create_task(get(queue))  # arrives after the put, before the woken waiter runs
    queue.put("b")
    queue.put("c")

    assert await first == "a"
    assert await second == "b"
    assert await newcomer == "c"
    assert queue.empty()


async def test_a_waiter_that_times_out_gets_empty_and_the_next_connection_goes_to_the_queue() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=1)

    with pytest.raises(Empty):
        await get(queue, within=0.01)
    queue.put("a")

    assert queue.qsize() == 1
    assert await get(queue) == "a"


async def test_a_connection_handed_to_a_waiter_that_was_cancelled_meanwhile_goes_to_the_next() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=1)
    gone, after = await two_waiters(queue)

    queue.put("a")  # handed to `gone`, which is cancelled before it runs
    gone.cancel()

    with pytest.raises(asyncio.CancelledError):
        await gone
    assert await after == "a"


def test_a_full_queue_refuses_more() -> None:
    queue: FairQueue[str] = FairQueue(maxsize=1)
    queue.put("a")

    with pytest.raises(Full):
        queue.put("b")


async def test_the_engine_uses_it_and_serves_more_requests_than_it_has_connections(
    kernel_settings: ServiceSettings, database_factory: DatabaseFactory
) -> None:
    database_url = await database_factory("pool")
    settings = kernel_settings.model_copy(update={"database_url": database_url, "db_pool_size": 2})
    engine = create_engine(settings)

    async def query() -> int:
        async with engine.connect() as connection:
            return int((await connection.execute(text("SELECT 1"))).scalar_one())

    try:
        assert isinstance(engine.pool, FairAsyncQueuePool)
        assert await asyncio.gather(*(query() for _ in range(20))) == [1] * 20
    finally:
        await engine.dispose()
