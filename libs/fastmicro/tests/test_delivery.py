"""EventDelivery: a handler run as the consumer runs it, against real PostgreSQL, with no broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from sqlalchemy import Column, MetaData, String, Table, Uuid, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro import context
from fastmicro.consumer import NonRetryable, RetryLater, Subscription, inbox_table
from fastmicro.db import create_session_factory
from fastmicro.events import DomainEvent, Envelope
from fastmicro.testing import EventDelivery
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.uow import UnitOfWork

notes = Table("notes", MetaData(), Column("event_id", Uuid), Column("text", String(10)))


class NoteTaken(DomainEvent):
    type: ClassVar[str] = "NoteTaken"
    source: ClassVar[str] = "kernel"

    text: str  # "later": RetryLater; "never": NonRetryable; over 10 characters: the database refuses it


async def take_note(event: NoteTaken, uow: UnitOfWork) -> None:
    if event.text == "later":
        raise RetryLater("what it needs has not arrived")
    if event.text == "never":
        raise NonRetryable("this can never work")
    await uow.session.execute(insert(notes).values(event_id=context.causation_id.get(), text=event.text))


@pytest.fixture
async def engine(database_factory: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await database_factory("delivery"))
    async with engine.begin() as conn:
        for table in (inbox_table, notes):
            await conn.run_sync(table.create)
    yield engine
    await engine.dispose()


@pytest.fixture
def delivery(engine: AsyncEngine) -> EventDelivery[UnitOfWork]:
    sessions = create_session_factory(engine)
    return EventDelivery([Subscription(NoteTaken, take_note)], lambda: UnitOfWork(sessions), retry_delays=(1, 5))


async def count(engine: AsyncEngine, table: Table) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


async def test_an_event_is_handled_once_and_its_redelivery_is_a_duplicate(
    delivery: EventDelivery[UnitOfWork], engine: AsyncEngine
) -> None:
    outcome = await delivery.deliver(NoteTaken(text="hello"))
    assert outcome.kind == "handled"
    assert outcome.envelope is not None
    again = await delivery.deliver(outcome.envelope)

    assert (again.kind, again.envelope) == ("duplicate", outcome.envelope)
    async with engine.connect() as conn:
        assert (await conn.execute(select(notes))).all() == [(outcome.envelope.id, "hello")]
    assert await count(engine, inbox_table) == 1


async def test_retry_later_is_retried_through_each_delay_then_dead_lettered(
    delivery: EventDelivery[UnitOfWork], engine: AsyncEngine
) -> None:
    envelope = Envelope.wrap(NoteTaken(text="later"))
    first = await delivery.deliver(envelope)
    second = await delivery.deliver(envelope, attempt=first.attempt)
    last = await delivery.deliver(envelope, attempt=second.attempt)

    assert [(o.kind, o.attempt, o.delay) for o in (first, second)] == [("retried", 1, 1), ("retried", 2, 5)]
    assert isinstance(first.error, RetryLater)
    assert (last.kind, last.reason, last.attempt) == ("dead_lettered", "attempts exhausted", 2)
    assert await count(engine, inbox_table) == 0  # nothing committed: the next delivery runs it again


async def test_permanent_failures_are_dead_lettered_at_once(delivery: EventDelivery[UnitOfWork]) -> None:
    refused = await delivery.deliver(NoteTaken(text="never"))
    too_long = await delivery.deliver(NoteTaken(text="x" * 11))

    assert (refused.kind, refused.reason) == ("dead_lettered", "non-retryable: this can never work")
    assert (too_long.kind, too_long.reason) == (
        "dead_lettered",
        "non-retryable: the database refuses the data (SQLSTATE 22001)",
    )


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "unparseable envelope"),
        (Envelope.wrap(NoteTaken(text="a")).model_copy(update={"data": {}}).model_dump_json().encode(), "invalid"),
        (Envelope.wrap(NoteTaken(text="a")).model_copy(update={"version": 2}).model_dump_json().encode(), "no handler"),
    ],
)
async def test_what_cannot_be_read_is_dead_lettered_unhandled(
    delivery: EventDelivery[UnitOfWork], engine: AsyncEngine, body: bytes, reason: str
) -> None:
    outcome = await delivery.deliver(body)
    assert outcome.kind == "dead_lettered"
    assert (outcome.reason or "").startswith(reason), outcome.reason
    assert await count(engine, notes) == 0


@pytest.mark.parametrize("header", [-1, "2", 1.5, True, 99])
async def test_a_forged_attempt_header_never_buys_a_retry(delivery: EventDelivery[UnitOfWork], header: Any) -> None:
    outcome = await delivery.deliver(NoteTaken(text="later"), attempt=header)
    assert (outcome.kind, outcome.reason) == ("dead_lettered", "attempts exhausted")
