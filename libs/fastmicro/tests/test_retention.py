"""Retention against real PostgreSQL: what is past its age goes, in bounded batches; work to do never does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import Connection, event, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro.consumer import inbox_table
from fastmicro.outbox import CLAIM_SQL, outbox_table
from fastmicro.retention import PURGE_INBOX, PURGE_OUTBOX, RetentionPurger
from fastmicro.runtime import Runtime, relay_only
from fastmicro.settings import ServiceSettings
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory

HOURS = timedelta(hours=1)
DAYS = timedelta(days=1)


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> str:
    return await database_factory("retention")


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(outbox_table.create)
        await conn.run_sync(inbox_table.create)
    yield engine
    await engine.dispose()


async def add_outbox(
    engine: AsyncEngine, *, age: timedelta, published: timedelta | None, count: int = 1
) -> set[uuid.UUID]:
    """`count` outbox rows created `age` ago, published `published` ago (None: not published)."""
    ids = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as conn:
        now = (await conn.execute(select(func.now()))).scalar_one()
        await conn.execute(
            insert(outbox_table),
            [
                {
                    "id": row_id,
                    "routing_key": "kernel.ThingHappened",
                    "payload": {},
                    "created_at": now - age,
                    "published_at": None if published is None else now - published,
                }
                for row_id in ids
            ],
        )
    return set(ids)


async def add_inbox(engine: AsyncEngine, *, age: timedelta, count: int = 1) -> set[uuid.UUID]:
    ids = [uuid.uuid4() for _ in range(count)]
    async with engine.begin() as conn:
        now = (await conn.execute(select(func.now()))).scalar_one()
        await conn.execute(
            insert(inbox_table), [{"message_id": i, "handler": "on_thing", "processed_at": now - age} for i in ids]
        )
    return set(ids)


async def outbox_ids(engine: AsyncEngine) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        return set((await conn.scalars(select(outbox_table.c.id))).all())


async def inbox_ids(engine: AsyncEngine) -> set[uuid.UUID]:
    async with engine.connect() as conn:
        return set((await conn.scalars(select(inbox_table.c.message_id))).all())


def purger(engine: AsyncEngine, **overrides: Any) -> RetentionPurger:
    options: dict[str, Any] = {"outbox_retention": 72 * HOURS, "inbox_retention": 14 * DAYS, **overrides}
    return RetentionPurger(engine, **options)


@contextlib.asynccontextmanager
async def running(role: RetentionPurger) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(role.run())
    try:
        yield task
    finally:
        role.stop()
        await asyncio.wait_for(task, 10)  # stops when asked, and has not crashed


async def eventually(condition: Any, within: float = 15.0) -> None:
    async with asyncio.timeout(within):
        while not await condition():
            await asyncio.sleep(0.1)


async def test_old_published_outbox_rows_go_and_recent_ones_stay(engine: AsyncEngine) -> None:
    old = await add_outbox(engine, age=100 * HOURS, published=80 * HOURS, count=3)
    recent = await add_outbox(engine, age=100 * HOURS, published=1 * HOURS)  # created long ago, published lately

    assert await purger(engine).purge() == {"outbox": 3, "inbox": 0}

    assert await outbox_ids(engine) == recent
    assert not old & await outbox_ids(engine)


async def test_unpublished_outbox_rows_are_never_deleted_whatever_their_age(engine: AsyncEngine) -> None:
    pending = await add_outbox(engine, age=10_000 * DAYS, published=None, count=5)

    assert await purger(engine, outbox_retention=timedelta(seconds=1)).purge() == {"outbox": 0, "inbox": 0}

    assert await outbox_ids(engine) == pending


async def test_old_inbox_rows_go_and_recent_ones_stay(engine: AsyncEngine) -> None:
    await add_inbox(engine, age=15 * DAYS, count=4)
    recent = await add_inbox(engine, age=13 * DAYS)

    assert await purger(engine).purge() == {"outbox": 0, "inbox": 4}

    assert await inbox_ids(engine) == recent


async def test_a_table_left_out_is_not_touched(engine: AsyncEngine) -> None:
    outbox = await add_outbox(engine, age=100 * HOURS, published=100 * HOURS)
    await add_inbox(engine, age=100 * DAYS)

    assert await purger(engine, outbox_retention=None).purge() == {"inbox": 1}

    assert await outbox_ids(engine) == outbox
    assert await inbox_ids(engine) == set()


async def test_more_rows_than_a_batch_all_go_each_batch_in_a_transaction_of_its_own(engine: AsyncEngine) -> None:
    await add_outbox(engine, age=100 * HOURS, published=100 * HOURS, count=25)
    await add_inbox(engine, age=100 * DAYS, count=23)
    deletes: list[int] = []

    def record(conn: Connection, cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().startswith("DELETE"):
            deletes.append(cursor.rowcount)

    event.listen(engine.sync_engine, "after_cursor_execute", record)
    try:
        assert await purger(engine, batch_size=10).purge() == {"outbox": 25, "inbox": 23}
    finally:
        event.remove(engine.sync_engine, "after_cursor_execute", record)

    assert await outbox_ids(engine) == set()
    assert await inbox_ids(engine) == set()
    assert deletes == [10, 10, 5, 10, 10, 3]  # never more than a batch per statement


async def test_replicas_purging_at_once_share_the_rows(engine: AsyncEngine) -> None:
    await add_outbox(engine, age=100 * HOURS, published=100 * HOURS, count=400)
    await add_inbox(engine, age=100 * DAYS, count=400)

    results = await asyncio.gather(*(purger(engine, batch_size=20).purge() for _ in range(3)))

    assert await outbox_ids(engine) == set()
    assert await inbox_ids(engine) == set()
    # Each row went once; a replica that met locked rows leaves them to the others (or to its next run).
    assert sum(result["outbox"] for result in results) == 400
    assert sum(result["inbox"] for result in results) == 400


async def test_a_missing_inbox_is_skipped_and_the_outbox_still_purged(database_url: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.run_sync(outbox_table.create)
        await add_outbox(engine, age=100 * HOURS, published=100 * HOURS, count=2)
        role = RecordingPurger(engine, outbox_retention=72 * HOURS, inbox_retention=14 * DAYS, interval=0.1)

        async with running(role):
            await eventually(lambda: _is_empty(engine))
            await eventually(lambda: _ran(role, 2))

        assert role.failures == 0
    finally:
        await engine.dispose()


async def _is_empty(engine: AsyncEngine) -> bool:
    return await outbox_ids(engine) == set()


async def _ran(role: RecordingPurger, runs: int) -> bool:
    return role.runs >= runs


class RecordingPurger(RetentionPurger):
    """Counts its purges and failures, and records every wait, to show each failure is followed by one (no hot loop)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waits: list[float] = []
        self.runs = 0
        self.failures = 0

    async def purge(self) -> dict[str, int]:
        try:
            deleted = await super().purge()
        except Exception:
            self.failures += 1
            raise
        self.runs += 1
        return deleted

    async def _sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        await super()._sleep(seconds)


async def test_the_purger_survives_a_database_cut_and_purges_after_restore(
    engine: AsyncEngine, database_url: str, tcp_proxy: ProxyFactory
) -> None:
    proxy = await tcp_proxy(database_url)
    proxied = create_async_engine(proxy.url_for(database_url), connect_args={"timeout": 2})
    role = RecordingPurger(
        proxied, outbox_retention=72 * HOURS, inbox_retention=14 * DAYS, interval=0.2, max_backoff=0.5
    )
    try:
        async with running(role) as task:
            await add_outbox(engine, age=100 * HOURS, published=100 * HOURS)
            await eventually(lambda: _is_empty(engine))

            await proxy.cut()
            stale = await add_outbox(engine, age=100 * HOURS, published=100 * HOURS)
            stale_inbox = await add_inbox(engine, age=100 * DAYS)
            await eventually(lambda: _failed(role, 3))
            assert not task.done()
            assert await outbox_ids(engine) == stale
            assert await inbox_ids(engine) == stale_inbox
            assert len(role.waits) >= role.failures  # every failure waited before the next try
            assert all(0 <= wait <= 0.5 for wait in role.waits)

            await proxy.restore()
            await eventually(lambda: _is_empty(engine))
            await eventually(lambda: _inbox_empty(engine))
    finally:
        await proxy.restore()
        await proxied.dispose()


async def _failed(role: RecordingPurger, failures: int) -> bool:
    return role.failures >= failures


async def _inbox_empty(engine: AsyncEngine) -> bool:
    return await inbox_ids(engine) == set()


async def _plan(engine: AsyncEngine, statement: str, params: dict[str, Any] | None = None) -> str:
    """EXPLAIN `statement` with sequential scans discouraged: on a tiny table the planner prefers them."""
    async with engine.begin() as conn:
        await conn.execute(text("SET LOCAL enable_seqscan = off"))
        rows = (await conn.execute(text(f"EXPLAIN {statement}"), params or {})).scalars().all()
    return "\n".join(rows)


async def test_the_relay_claims_through_the_unpublished_index_and_retention_through_the_published_one(
    engine: AsyncEngine,
) -> None:
    claim = CLAIM_SQL.replace("$1", "200")
    params = {"age_seconds": 3600.0, "batch_size": 1000}

    claim_plan = await _plan(engine, claim)
    outbox_plan = await _plan(engine, PURGE_OUTBOX.text, params)
    inbox_plan = await _plan(engine, PURGE_INBOX.text, params)

    assert "ix_outbox_unpublished" in claim_plan, claim_plan
    assert "ix_outbox_published" in outbox_plan, outbox_plan
    assert "ix_outbox_unpublished" not in outbox_plan, outbox_plan
    assert "ix_inbox_processed_at" in inbox_plan, inbox_plan


def test_a_service_without_a_consumer_purges_its_outbox_only(kernel_settings: ServiceSettings) -> None:
    runtime = Runtime.from_settings(kernel_settings)

    [retention] = [role for role in relay_only(runtime) if isinstance(role, RetentionPurger)]

    assert retention.tables == ("outbox",)
    assert runtime.retention_purger(outbox=False, inbox=True).tables == ("inbox",)
    assert runtime.retention_purger(outbox=True, inbox=True).tables == ("outbox", "inbox")


def test_a_purger_needs_a_table() -> None:
    with pytest.raises(ValueError, match="at least one table"):
        RetentionPurger(create_async_engine("postgresql+asyncpg://kernel@127.0.0.1:9/unused"))


def test_an_inbox_kept_for_less_than_the_retries_is_refused() -> None:
    with pytest.raises(ValueError, match="INBOX_RETENTION_DAYS"):
        ServiceSettings(
            service_name="kernel-test",
            database_url="postgresql+asyncpg://kernel@127.0.0.1:9/unused",
            inbox_retention_days=0.0001,  # under 9 seconds
            consumer_retry_delays=[5.0, 30.0],
            _env_file=None,
        )
