"""EventDelivery: a handler run as the consumer runs it, against real PostgreSQL, with no broker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any, ClassVar

import pytest
from pydantic import Field
from sqlalchemy import Column, MetaData, String, Table, Uuid, func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from fastmicro import context
from fastmicro.consumer import NonRetryable, RetryLater, Subscription, inbox_table
from fastmicro.db import create_session_factory
from fastmicro.events import DomainEvent, Envelope, EventRegistry
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


class NoteTakenV2(DomainEvent):
    type: ClassVar[str] = "NoteTaken"
    version: ClassVar[int] = 2
    source: ClassVar[str] = "kernel"

    text: Annotated[str, Field(max_length=5)]
    shouted: bool


def shout(old: NoteTaken) -> NoteTakenV2:
    """v1 -> v2, visibly: the text upper-cased. "bug" is an upcaster's own fault."""
    if old.text == "bug":
        raise KeyError(old.text)
    return NoteTakenV2(text=old.text.upper(), shouted=True)


async def take_note_v2(event: NoteTakenV2, uow: UnitOfWork) -> None:
    await take_note(NoteTaken(text=event.text), uow)


@pytest.fixture
def versions() -> EventRegistry:
    """NoteTaken v1 and v2 and the upcaster between them, apart from the process's registry."""
    versions = EventRegistry()
    versions.register(NoteTaken)
    versions.register(NoteTakenV2)
    versions.upcaster(NoteTaken, NoteTakenV2)(shout)
    return versions


@pytest.fixture
def delivery_v2(engine: AsyncEngine, versions: EventRegistry) -> EventDelivery[UnitOfWork]:
    sessions = create_session_factory(engine)
    return EventDelivery([Subscription(NoteTakenV2, take_note_v2)], lambda: UnitOfWork(sessions), events=versions)


async def test_an_old_version_reaches_the_handler_of_the_new_one_through_its_upcaster(
    delivery_v2: EventDelivery[UnitOfWork], engine: AsyncEngine
) -> None:
    old = await delivery_v2.deliver(NoteTaken(text="hi"))
    new = await delivery_v2.deliver(NoteTakenV2(text="yo", shouted=False))
    assert old.envelope is not None
    again = await delivery_v2.deliver(old.envelope)

    assert (old.kind, new.kind, again.kind) == ("handled", "handled", "duplicate")
    assert old.envelope.version == 1  # the message as it came; its handler saw v2
    assert delivery_v2.handling.readable == [NoteTaken, NoteTakenV2]
    async with engine.connect() as conn:
        assert sorted(row.text for row in await conn.execute(select(notes))) == ["HI", "yo"]


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (NoteTaken(text="hello!"), "cannot upcast NoteTaken v1 -> v2: text: String should have at most 5 characters"),
        (NoteTaken(text="bug"), "cannot upcast NoteTaken v1 -> v2: KeyError"),  # its type, never its text
        (
            Envelope.wrap(NoteTaken(text="a")).model_copy(update={"data": {}}).model_dump_json().encode(),
            "invalid NoteTaken v1 data: text: Field required",  # checked against its own version first
        ),
        (
            Envelope.wrap(NoteTaken(text="a")).model_copy(update={"version": 3}).model_dump_json().encode(),
            "no handler for NoteTaken v3",
        ),
    ],
    ids=["new-version-refuses-it", "upcaster-fails", "invalid-old-version", "unknown-version"],
)
async def test_an_old_version_that_cannot_be_upcast_is_dead_lettered_at_once(
    delivery_v2: EventDelivery[UnitOfWork], engine: AsyncEngine, message: DomainEvent | bytes, reason: str
) -> None:
    outcome = await delivery_v2.deliver(message)
    assert (outcome.kind, outcome.reason, outcome.attempt) == ("dead_lettered", reason, 0)
    assert await count(engine, notes) == 0


async def test_a_version_subscribed_to_is_handled_as_it_is_not_upcast(
    engine: AsyncEngine, versions: EventRegistry
) -> None:
    sessions = create_session_factory(engine)
    both = EventDelivery(
        [Subscription(NoteTaken, take_note), Subscription(NoteTakenV2, take_note_v2)],
        lambda: UnitOfWork(sessions),
        events=versions,
    )
    assert (await both.deliver(NoteTaken(text="hi"))).kind == "handled"
    async with engine.connect() as conn:
        assert [row.text for row in await conn.execute(select(notes))] == ["hi"]
