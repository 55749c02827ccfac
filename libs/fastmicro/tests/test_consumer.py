"""The consumer runtime against real RabbitMQ and PostgreSQL: once-only effects, retries, dead letters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, ClassVar

import pytest
import structlog
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from prometheus_client import REGISTRY
from sqlalchemy import CheckConstraint, Column, MetaData, String, Table, Uuid, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from fastmicro import tracing
from fastmicro.consumer import (
    ATTEMPT_HEADER,
    DEFAULT_MAX_MESSAGE_BYTES,
    ERROR_HEADER,
    REASON_HEADER,
    EventConsumer,
    NonRetryable,
    Subscription,
    inbox_table,
)
from fastmicro.db import create_session_factory
from fastmicro.events import DomainEvent, Envelope
from fastmicro.logging import configure_logging
from fastmicro.messaging import Broker, Publisher
from fastmicro.outbox import outbox_table
from fastmicro.settings import ServiceSettings
from fastmicro.testing import publish_envelope, publish_event, publish_raw
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from fastmicro.uow import OutboxUnitOfWork

RETRY_DELAYS = (0.2, 0.4)
#: How long any promise of the consumer may take here: every retry delay, and a margin for a busy machine.
PATIENCE = sum(RETRY_DELAYS) + 10.0

effects = Table("effects", MetaData(), Column("event_id", Uuid), Column("thing_id", Uuid), Column("mode", String))
signups = Table(
    "signups",
    MetaData(),
    Column("email", String(32)),
    Column("name", String),
    Column("body", String),
    CheckConstraint("body NOT LIKE 'reject%'", name="body_accepted"),
)


class ThingHappened(DomainEvent):
    type: ClassVar[str] = "ThingHappened"
    source: ClassVar[str] = "kernel"

    thing_id: uuid.UUID
    mode: str = "ok"  # ok | fail_twice | always_fail | non_retryable | slow | cascade


class ThingFollowed(DomainEvent):
    type: ClassVar[str] = "ThingFollowed"
    source: ClassVar[str] = "kernel"

    thing_id: uuid.UUID


class SignedUp(DomainEvent):
    """Personal data in plain `str` fields: what the database refuses reaches the handler."""

    type: ClassVar[str] = "SignedUp"
    source: ClassVar[str] = "kernel"

    ref: uuid.UUID
    email: str
    name: str
    body: str


ConsumerFactory = Callable[..., EventConsumer[OutboxUnitOfWork]]
failures: Counter[uuid.UUID] = Counter()
runs: Counter[uuid.UUID] = Counter()


async def take_signup(event: SignedUp, uow: OutboxUnitOfWork) -> None:
    runs[event.ref] += 1
    await uow.session.execute(insert(signups).values(email=event.email, name=event.name, body=event.body))


async def handle(event: ThingHappened, uow: OutboxUnitOfWork) -> None:
    runs[event.thing_id] += 1
    if event.mode == "always_fail":
        raise RuntimeError("failure every time")
    if event.mode == "fail_twice" and failures[event.thing_id] < 2:
        failures[event.thing_id] += 1
        raise RuntimeError("transient failure")
    if event.mode == "non_retryable":
        raise NonRetryable("this can never work")
    if event.mode == "slow":
        await asyncio.sleep(1.5)
    if event.mode == "cascade":
        uow.emit(ThingFollowed(thing_id=event.thing_id))
    await uow.session.execute(insert(effects).values(event_id=uuid.uuid4(), thing_id=event.thing_id, mode=event.mode))


@pytest.fixture
async def engine(database_factory: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await database_factory("consumer"))
    async with engine.begin() as conn:
        for table in (inbox_table, outbox_table, effects, signups):
            await conn.run_sync(table.create)
    yield engine
    await engine.dispose()


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[Any]:
    return create_session_factory(engine)


@pytest.fixture
def make_consumer(
    test_broker: Broker, sessions: async_sessionmaker[Any], queues_to_delete: list[str]
) -> ConsumerFactory:
    service = f"kernel-{uuid.uuid4().hex[:6]}"

    def make(*, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> EventConsumer[OutboxUnitOfWork]:
        consumer = EventConsumer(
            test_broker,
            service=service,
            subscriptions=[Subscription(ThingHappened, handle), Subscription(SignedUp, take_signup)],
            uow_factory=lambda: OutboxUnitOfWork(sessions),
            retry_delays=RETRY_DELAYS,
            prefetch=4,
            max_message_bytes=max_message_bytes,
        )
        queues_to_delete.extend(name for name in consumer.queue_names if name not in queues_to_delete)
        return consumer

    return make


@pytest.fixture
def json_logs(kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """The process's log as production writes it (JSON lines on stderr, which capsys holds); then the old one back."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    configure_logging(kernel_settings.model_copy(update={"log_format": "json", "log_level": "INFO"}))
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)
    structlog.contextvars.unbind_contextvars("service")


@contextlib.asynccontextmanager
async def running(consumer: EventConsumer[OutboxUnitOfWork]) -> AsyncIterator[asyncio.Task[None]]:
    channel = await consumer._broker.channel(publisher_confirms=False)
    await consumer.declare(channel)  # bound before anything is published, as `topology` does
    await channel.close()
    task = asyncio.create_task(consumer.run())
    try:
        yield task
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)


async def effects_of(engine: AsyncEngine, thing_id: uuid.UUID) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.scalars(select(effects.c.mode).where(effects.c.thing_id == thing_id))).all())


async def wait_effects(engine: AsyncEngine, thing_id: uuid.UUID, count: int = 1, within: float = 15) -> list[str]:
    async with asyncio.timeout(within):
        while len(found := await effects_of(engine, thing_id)) < count:
            await asyncio.sleep(0.05)
    return found


async def dead_letters(broker: Broker, queue: str, within: float = 10, count: int = 1) -> list[AbstractIncomingMessage]:
    channel = await broker.channel(publisher_confirms=False)
    found: list[AbstractIncomingMessage] = []
    try:
        dead = await channel.declare_queue(queue, passive=True)
        async with asyncio.timeout(within):
            while len(found) < count:
                message = await dead.get(no_ack=True, fail=False)
                if message is None:
                    await asyncio.sleep(0.05)
                else:
                    found.append(message)
    finally:
        await channel.close()
    return found


async def test_a_message_delivered_twice_has_one_effect(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    consumer = make_consumer()
    thing = uuid.uuid4()
    handled, duplicates = consumed("handled"), consumed("duplicate")
    async with running(consumer):
        envelope = await publish_event(test_broker, ThingHappened(thing_id=thing))
        await publish_envelope(test_broker, envelope)
        await wait_effects(engine, thing)
        async with asyncio.timeout(10):
            while consumed("duplicate") < duplicates + 1:
                await asyncio.sleep(0.05)
    assert await effects_of(engine, thing) == ["ok"]
    assert (consumed("handled") - handled, consumed("duplicate") - duplicates) == (1, 1)


def consumed(outcome: str) -> float:
    """`consumer_messages_total` for ThingHappened: this process's consumers, one test at a time."""
    labels = {"event_type": "ThingHappened", "outcome": outcome}
    return REGISTRY.get_sample_value("consumer_messages_total", labels) or 0.0


async def test_a_failing_handler_is_retried_through_the_delay_queues_and_succeeds_once(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    thing = uuid.uuid4()
    async with running(make_consumer()):
        await publish_event(test_broker, ThingHappened(thing_id=thing, mode="fail_twice"))
        loop = asyncio.get_running_loop()
        started = loop.time()
        await wait_effects(engine, thing)
        elapsed = loop.time() - started
        await asyncio.sleep(0.5)
    assert failures[thing] == 2
    assert await effects_of(engine, thing) == ["fail_twice"]
    assert elapsed >= 0.2 + 0.4  # it waited in both delay queues


async def test_poison_messages_are_dead_lettered_with_a_reason_and_the_stream_flows_on(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    consumer = make_consumer()
    after = uuid.uuid4()
    async with running(consumer):
        await publish_raw(test_broker, "kernel.ThingHappened", b"{not json", message_id="poison-1")
        await publish_raw(
            test_broker,
            "kernel.ThingHappened",
            json.dumps(_envelope(data={"thing_id": "not-a-uuid"})).encode(),
            message_id="poison-2",
        )
        await publish_event(test_broker, ThingHappened(thing_id=uuid.uuid4(), mode="non_retryable"))
        await publish_event(test_broker, ThingHappened(thing_id=after))
        await wait_effects(engine, after)
        dead = await dead_letters(test_broker, consumer.dead_queue_name, count=3)

    reasons = sorted(str(message.headers[REASON_HEADER]) for message in dead)
    assert reasons[0].startswith("invalid ThingHappened v1 data: thing_id"), reasons
    assert reasons[1].startswith("non-retryable: this can never work"), reasons
    assert reasons[2].startswith("unparseable envelope"), reasons
    assert {message.message_id for message in dead} >= {"poison-1", "poison-2"}


async def test_a_handler_failing_every_time_ends_in_the_dead_letter_queue(
    make_consumer: ConsumerFactory, test_broker: Broker
) -> None:
    consumer = make_consumer()
    thing = uuid.uuid4()
    failures[thing] = -100  # fail_twice never runs out of failures for this one
    async with running(consumer):
        await publish_event(test_broker, ThingHappened(thing_id=thing, mode="fail_twice"))
        [dead] = await dead_letters(test_broker, consumer.dead_queue_name)
    assert dead.headers[REASON_HEADER] == "attempts exhausted"
    assert dead.headers[ATTEMPT_HEADER] == 2
    assert failures[thing] == -100 + 3  # the first try and two retries


async def test_unknown_fields_are_ignored(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    thing = uuid.uuid4()
    body = _envelope(data={"thing_id": str(thing), "mode": "ok", "added_in_a_later_release": [1, 2]})
    body["added_to_the_envelope"] = True
    async with running(make_consumer()):
        await publish_raw(test_broker, "kernel.ThingHappened", json.dumps(body).encode())
        assert await wait_effects(engine, thing) == ["ok"]


async def test_events_caused_by_a_handler_carry_its_correlation_and_causation(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    thing = uuid.uuid4()
    async with running(make_consumer()):
        cause = await publish_event(
            test_broker, ThingHappened(thing_id=thing, mode="cascade"), correlation_id="request-42"
        )
        await wait_effects(engine, thing)
    async with engine.connect() as conn:
        [payload] = (await conn.scalars(select(outbox_table.c.payload))).all()
    caused = Envelope.model_validate(payload)
    assert (caused.type, caused.correlation_id, caused.causation_id) == ("ThingFollowed", "request-42", cause.id)


async def test_a_stopped_consumer_finishes_what_it_holds_and_loses_nothing(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    things = [uuid.uuid4() for _ in range(8)]
    first = make_consumer()
    async with running(first):
        for thing in things:
            await publish_event(test_broker, ThingHappened(thing_id=thing, mode="slow"))
        async with asyncio.timeout(10):  # prefetch 4: four handlers are mid-way (each sleeps 1.5 s)
            while len(first._in_flight) < 4:
                await asyncio.sleep(0.01)
    # Stopped: those in hand finished; the rest went back to the queue unacked.
    done_by_first = [thing for thing in things if await effects_of(engine, thing)]
    assert len(done_by_first) >= 1
    async with running(make_consumer()):
        for thing in things:
            await wait_effects(engine, thing)
    assert [len(await effects_of(engine, thing)) for thing in things] == [1] * len(things)


async def test_a_message_over_the_size_limit_is_dead_lettered_unread(
    make_consumer: ConsumerFactory, test_broker: Broker, engine: AsyncEngine
) -> None:
    consumer = make_consumer(max_message_bytes=4096)
    big, after = uuid.uuid4(), uuid.uuid4()
    # A well-formed event: only its size (an unknown field) keeps it from being handled.
    body = json.dumps(_envelope(data={"thing_id": str(big), "padding": "x" * 4096})).encode()
    async with running(consumer):
        await publish_raw(test_broker, "kernel.ThingHappened", body, message_id="too-big")
        await publish_event(test_broker, ThingHappened(thing_id=after))
        await wait_effects(engine, after, within=PATIENCE)
        [dead] = await dead_letters(test_broker, consumer.dead_queue_name, within=PATIENCE)
    assert dead.headers[REASON_HEADER] == f"message too large: {len(body)} bytes, the limit is 4096"
    assert (dead.message_id, dead.body) == ("too-big", body)
    assert runs[big] == 0
    assert await effects_of(engine, big) == []


@pytest.mark.parametrize(
    ("header", "expected_runs"),
    [(-100, 1), (-1, 1), ("0", 1), (1.5, 1), (True, 1), (2**40, 1), (1, 2)],
    ids=["negative", "minus-one", "text", "float", "boolean", "absurd", "valid-one"],
)
async def test_the_attempt_header_never_buys_extra_runs(
    make_consumer: ConsumerFactory, test_broker: Broker, header: object, expected_runs: int
) -> None:
    """Only the runtime writes the header: anything it would not write counts as the last attempt."""
    consumer = make_consumer()
    thing = uuid.uuid4()
    body = json.dumps(_envelope(data={"thing_id": str(thing), "mode": "always_fail"})).encode()
    async with running(consumer):
        await publish_raw(test_broker, "kernel.ThingHappened", body, headers={ATTEMPT_HEADER: header})
        [dead] = await dead_letters(test_broker, consumer.dead_queue_name, within=PATIENCE)
    assert runs[thing] == expected_runs
    assert dead.headers[REASON_HEADER] == "attempts exhausted"
    assert dead.headers[ATTEMPT_HEADER] == len(RETRY_DELAYS)


@pytest.mark.parametrize(
    ("email", "name", "sqlstate"),
    [("nul@example.com", "Nul\x00Name", "22021"), ("much-too-long-for-its-column@example.com", "Long", "22001")],
    ids=["nul-in-text", "longer-than-the-column"],
)
async def test_data_the_database_refuses_is_dead_lettered_at_once(
    make_consumer: ConsumerFactory, test_broker: Broker, email: str, name: str, sqlstate: str
) -> None:
    consumer = make_consumer()
    ref = uuid.uuid4()
    async with running(consumer):
        await publish_event(test_broker, SignedUp(ref=ref, email=email, name=name, body="hello"))
        [dead] = await dead_letters(test_broker, consumer.dead_queue_name, within=PATIENCE)
    assert runs[ref] == 1
    assert dead.headers[REASON_HEADER] == f"non-retryable: the database refuses the data (SQLSTATE {sqlstate})"
    assert dead.headers[ERROR_HEADER] == f"DBAPIError (SQLSTATE {sqlstate})"
    assert dead.headers[ATTEMPT_HEADER] == 0


@pytest.mark.usefixtures("json_logs")
async def test_a_failing_handler_logs_neither_the_event_data_nor_the_sql_parameters(
    make_consumer: ConsumerFactory, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each failure's text holds the statement's parameters; the log and headers get its type and SQLSTATE."""
    consumer = make_consumer()
    refused = SignedUp(ref=uuid.uuid4(), email="jane.roe@example.com", name="Jane Roe", body="reject: Dear Jane")
    broken = SignedUp(ref=uuid.uuid4(), email="john.doe@example.com", name="John\x00Doe", body="Dear John")
    async with running(consumer):
        retried = await publish_event(test_broker, refused)  # a CHECK violation (23514): retried, then dead
        at_once = await publish_event(test_broker, broken)  # a NUL (22021): dead at once
        dead = await dead_letters(test_broker, consumer.dead_queue_name, within=PATIENCE, count=2)

    logged = capsys.readouterr().err
    headers = json.dumps([message.headers for message in dead], default=str)
    for personal in ("Jane", "John", "Doe", "Roe", "example.com", "Dear", "reject"):
        assert personal not in logged
        assert personal not in headers
    lines = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    failed = [line for line in lines if line["event"] == "event_handler_failed"]
    assert [(line["message_id"], line["attempt"]) for line in failed] == [(str(retried.id), 1), (str(retried.id), 2)]
    for line in failed:
        assert (line["event_type"], line["handler"], line["error_type"], line["sqlstate"]) == (
            "SignedUp",
            "take_signup",
            "IntegrityError",
            "23514",
        )
    died = {line["message_id"]: line for line in lines if line["event"] == "event_dead_lettered"}
    assert (died[str(retried.id)]["sqlstate"], died[str(retried.id)]["attempt"]) == ("23514", 2)
    assert (died[str(at_once.id)]["sqlstate"], died[str(at_once.id)]["attempt"]) == ("22021", 0)
    assert all(line["handler"] == "take_signup" for line in died.values())


async def test_a_forged_type_is_counted_as_unknown_not_as_a_new_metric_series(
    make_consumer: ConsumerFactory, test_broker: Broker
) -> None:
    consumer = make_consumer()
    forged = f"Forged{uuid.uuid4().hex}"
    unknown = {"event_type": "unknown", "outcome": "dead_lettered"}
    before = REGISTRY.get_sample_value("consumer_messages_total", unknown) or 0.0
    async with running(consumer):
        await publish_raw(test_broker, "kernel.ThingHappened", b"{not json", type_=forged)
        await dead_letters(test_broker, consumer.dead_queue_name, within=PATIENCE)
    assert REGISTRY.get_sample_value("consumer_messages_total", {**unknown, "event_type": forged}) is None
    assert REGISTRY.get_sample_value("consumer_messages_total", unknown) == before + 1


def _envelope(*, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "type": "ThingHappened",
        "version": 1,
        "source": "kernel",
        "occurred_at": "2026-11-22T10:00:00.123456Z",
        "correlation_id": None,
        "causation_id": None,
        "data": data,
    }


async def test_once_started_after_failures_the_consumer_backs_off_from_the_start_again(
    test_broker: Broker, sessions: async_sessionmaker[Any], queues_to_delete: list[str], tcp_proxy: ProxyFactory
) -> None:
    """A broker down at start costs growing pauses; once consuming, the next failure starts short again."""
    proxy = await tcp_proxy(test_broker.url)
    await proxy.cut()
    broker = Broker(proxy.url_for(test_broker.url), test_broker.topology)
    consumer = EventConsumer(
        broker,
        service=f"kernel-{uuid.uuid4().hex[:6]}",
        subscriptions=[Subscription(ThingHappened, handle)],
        uow_factory=lambda: OutboxUnitOfWork(sessions),
        retry_delays=RETRY_DELAYS,
    )
    queues_to_delete.extend(consumer.queue_names)
    task = asyncio.create_task(consumer.run())
    try:
        async with asyncio.timeout(PATIENCE):
            while consumer._backoff.failures < 2:
                await asyncio.sleep(0.05)
        await proxy.restore()
        async with asyncio.timeout(PATIENCE):  # the pauses so far are under a second together
            while consumer._backoff.failures:
                await asyncio.sleep(0.05)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)
        await broker.close()


async def test_traced_each_attempt_continues_the_senders_trace_and_says_what_became_of_it(
    make_consumer: ConsumerFactory, test_broker: Broker
) -> None:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing("kernel", exporter=exporter)
    try:
        assert tracing.TRACER is not None
        with tracing.TRACER.start_as_current_span("emitting") as emitting:
            headers = tracing.current_carrier()
        consumer = make_consumer()
        thing = uuid.uuid4()
        failures[thing] = -100  # fails every time: two retries, then the dead letter
        envelope = Envelope.wrap(ThingHappened(thing_id=thing, mode="fail_twice"))
        async with running(consumer):
            await Publisher(test_broker).publish_json(
                envelope.model_dump_json().encode(),
                message_id=envelope.id,
                type=envelope.type,
                correlation_id=None,
                occurred_at=envelope.occurred_at,
                routing_key=envelope.routing_key,
                headers=headers,
            )
            [dead] = await dead_letters(test_broker, consumer.dead_queue_name)
        # The stop waited for the messages in hand: every consumer span has ended.
    finally:
        tracing.disable_tracing()
    assert dead.headers["traceparent"] == (headers or {})["traceparent"]  # the copies keep the context
    attempts = [span for span in exporter.get_finished_spans() if span.kind == SpanKind.CONSUMER]
    assert [(span.attributes or {}).get("fastmicro.attempt") for span in attempts] == [0, 1, 2]
    assert {span.parent.span_id for span in attempts if span.parent} == {emitting.get_span_context().span_id}
    assert [
        [(event.name, (event.attributes or {}).get("fastmicro.attempt")) for event in span.events] for span in attempts
    ] == [
        [("retry", 1)],
        [("retry", 2)],
        [("dead_lettered", 2)],
    ]
