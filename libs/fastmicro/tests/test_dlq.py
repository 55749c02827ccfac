"""`python -m <svc> dlq ...` against real RabbitMQ: messages dead-lettered by a real consumer, read back,
replayed and purged without losing any."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import aio_pika
import pytest
import structlog
from sqlalchemy import Column, MetaData, String, Table, Uuid, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from fastmicro.consumer import (
    ATTEMPT_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
    EventConsumer,
    NonRetryable,
    Subscription,
    inbox_table,
)
from fastmicro.db import create_session_factory
from fastmicro.dlq import (
    BODY_PREVIEW_BYTES,
    DeadLetterQueues,
    QueueMissing,
    find_dead_letters,
    list_dead_letters,
    purge_dead_letters,
    replay_dead_letters,
)
from fastmicro.events import DomainEvent, Envelope
from fastmicro.letters import REPLAYED_HEADER
from fastmicro.messaging import Broker
from fastmicro.outbox import outbox_table
from fastmicro.queues import QueueType
from fastmicro.runtime import BackgroundRole, Runtime, relay_only
from fastmicro.settings import ServiceSettings
from fastmicro.testing import TestServers, publish_event, publish_raw
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.uow import UnitOfWork

from .conftest import cli

parcels = Table("parcels", MetaData(), Column("parcel_id", Uuid), Column("mode", String))


class ParcelSent(DomainEvent):
    type: ClassVar[str] = "ParcelSent"
    source: ClassVar[str] = "kernel"

    parcel_id: uuid.UUID
    mode: str = "flaky"  # flaky: refused once, then handled | broken: always refused


refused: set[uuid.UUID] = set()


async def handle(event: ParcelSent, uow: UnitOfWork) -> None:
    if event.mode == "broken" or event.parcel_id not in refused:
        refused.add(event.parcel_id)
        raise NonRetryable(f"cannot take a {event.mode} parcel")
    await uow.session.execute(insert(parcels).values(parcel_id=event.parcel_id, mode=event.mode))


SUBSCRIPTIONS = [Subscription(ParcelSent, handle)]


@pytest.fixture(scope="module")
async def engine(database_factory: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await database_factory("dlq"))
    async with engine.begin() as conn:
        for table in (inbox_table, outbox_table, parcels):
            await conn.run_sync(table.create)
    yield engine
    await engine.dispose()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """`run_cli` configures logging for the process: give the other tests theirs back."""
    root = logging.getLogger()
    handlers, level, config = root.handlers[:], root.level, structlog.get_config()
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    structlog.configure(**config)


@dataclass
class DeadLetters:
    """A consumer of a service of its own, and the three messages it dead-lettered."""

    service: str
    settings: ServiceSettings
    consumer: EventConsumer[UnitOfWork]
    queues: DeadLetterQueues
    task: asyncio.Task[None]
    flaky: Envelope  # NonRetryable the first time, handled when replayed
    broken: Envelope  # NonRetryable every time
    garbage_id: str  # not even JSON

    @property
    def flaky_parcel(self) -> uuid.UUID:
        return uuid.UUID(self.flaky.data["parcel_id"])

    @property
    def ids(self) -> set[str]:
        return {str(self.flaky.id), str(self.broken.id), self.garbage_id}

    async def stop_consumer(self) -> None:
        self.consumer.stop()
        await asyncio.wait_for(self.task, 15)

    def roles(self, runtime: Runtime) -> list[BackgroundRole]:
        """The roles factory of this service, as its `__main__` would pass it to `run_cli`."""
        return [runtime.consumer(SUBSCRIPTIONS, lambda: UnitOfWork(runtime.session_factory))]


@pytest.fixture
async def dead(
    test_broker: Broker,
    engine: AsyncEngine,
    kernel_settings: ServiceSettings,
    test_servers: TestServers,
    queues_to_delete: list[str],
) -> AsyncIterator[DeadLetters]:
    service = f"dlq-{uuid.uuid4().hex[:6]}"
    sessions: async_sessionmaker[Any] = create_session_factory(engine)
    consumer = EventConsumer(
        test_broker,
        service=service,
        subscriptions=SUBSCRIPTIONS,
        uow_factory=lambda: UnitOfWork(sessions),
        retry_delays=[0.2],
    )
    queues_to_delete.extend(consumer.queue_names)
    channel = await test_broker.channel(publisher_confirms=False)
    await consumer.declare(channel)
    await channel.close()
    task = asyncio.create_task(consumer.run())
    try:
        flaky = await publish_event(test_broker, ParcelSent(parcel_id=uuid.uuid4()), correlation_id="request-7")
        broken = await publish_event(test_broker, ParcelSent(parcel_id=uuid.uuid4(), mode="broken"))
        garbage_id = str(uuid.uuid4())
        await publish_raw(test_broker, ParcelSent.routing_key(), b"{not json", message_id=garbage_id)
        await wait_depth(test_broker, consumer.dead_queue_name, 3)
        settings = kernel_settings.model_copy(update={"service_name": service, "amqp_url": test_servers.amqp_url})
        yield DeadLetters(service, settings, consumer, DeadLetterQueues.of(consumer), task, flaky, broken, garbage_id)
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)


async def depth(broker: Broker, queue: str) -> int:
    channel = await broker.channel(publisher_confirms=False)
    try:
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0
    finally:
        await channel.close()


async def wait_depth(broker: Broker, queue: str, count: int, within: float = 15) -> None:
    async with asyncio.timeout(within):
        while await depth(broker, queue) != count:
            await asyncio.sleep(0.05)


async def dead_ids(broker: Broker, queues: DeadLetterQueues) -> list[str]:
    return [letter.message_id or "-" for letter in (await list_dead_letters(broker, queues)).letters]


async def handled(engine: AsyncEngine, parcel_id: uuid.UUID, within: float = 15) -> list[str]:
    async with asyncio.timeout(within):
        while True:
            async with engine.connect() as conn:
                found = list((await conn.scalars(select(parcels.c.mode).where(parcels.c.parcel_id == parcel_id))).all())
            if found:
                return found
            await asyncio.sleep(0.05)


async def test_list_shows_every_dead_letter_with_its_reason_and_leaves_the_queue_as_it_was(
    dead: DeadLetters, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(dead.settings, dead.roles, "dlq", "list") == 0
    first = capsys.readouterr().out
    assert await cli(dead.settings, dead.roles, "dlq", "list") == 0
    second = capsys.readouterr().out

    assert first == second
    for message_id in dead.ids:
        assert message_id in first
    assert "non-retryable: cannot take a flaky parcel" in first
    assert "non-retryable: cannot take a broken parcel" in first
    assert "unparseable envelope" in first
    assert "ParcelSent" in first
    assert "kernel.ParcelSent" in first
    assert f"3 dead letter(s) listed; {dead.queues.dead_queue} holds 3" in first
    assert await depth(test_broker, dead.queues.dead_queue) == 3


async def test_list_reads_in_queue_order_and_twice_gives_the_same(dead: DeadLetters, test_broker: Broker) -> None:
    first = await list_dead_letters(test_broker, dead.queues)
    second = await list_dead_letters(test_broker, dead.queues)

    assert [letter.message_id for letter in first.letters] == [letter.message_id for letter in second.letters]
    assert [letter.position for letter in first.letters] == [1, 2, 3]
    assert first.depth == 3
    by_id = {letter.message_id: letter for letter in first.letters}
    assert set(by_id) == dead.ids
    flaky = by_id[str(dead.flaky.id)]
    assert (flaky.event_type, flaky.routing_key, flaky.attempts, flaky.replayed) == (
        "ParcelSent",
        "kernel.ParcelSent",
        0,
        0,
    )
    assert flaky.error == "NonRetryable: cannot take a flaky parcel"
    assert (by_id[dead.garbage_id].reason or "").startswith("unparseable envelope")
    assert all(letter.dead_at is not None and letter.dead_at.tzinfo is not None for letter in first.letters)
    assert await depth(test_broker, dead.queues.dead_queue) == 3


async def test_list_json_is_one_document_and_limit_lists_the_first_only(
    dead: DeadLetters, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(dead.settings, dead.roles, "dlq", "list", "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert (document["queue"], document["depth"], document["count"]) == (dead.queues.dead_queue, 3, 3)
    assert {letter["message_id"] for letter in document["dead_letters"]} == dead.ids
    assert all(letter["reason"] for letter in document["dead_letters"])

    assert await cli(dead.settings, dead.roles, "dlq", "list", "--json", "--limit", "1") == 0
    limited = json.loads(capsys.readouterr().out)
    assert (limited["depth"], limited["count"]) == (3, 1)
    assert limited["dead_letters"][0] == document["dead_letters"][0]


async def test_show_prints_the_headers_and_the_body(
    dead: DeadLetters, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(dead.settings, dead.roles, "dlq", "show", str(dead.flaky.id)) == 0
    out = capsys.readouterr().out
    assert f"{REASON_HEADER}: " in out
    assert f'{ROUTING_KEY_HEADER}: "kernel.ParcelSent"' in out
    assert "correlation id: request-7" in out
    assert f'    "parcel_id": "{dead.flaky.data["parcel_id"]}"' in out  # the body, pretty-printed

    assert await cli(dead.settings, dead.roles, "dlq", "show", dead.garbage_id) == 0
    assert out != (garbage := capsys.readouterr().out)
    assert garbage.rstrip().endswith("body:\n{not json")

    assert await cli(dead.settings, dead.roles, "dlq", "show", str(dead.broken.id), "--json") == 0
    document = json.loads(capsys.readouterr().out)
    assert document["headers"][ATTEMPT_HEADER] == 0
    assert document["headers"][ERROR_HEADER] == "NonRetryable: cannot take a broken parcel"
    assert document["body_json"]["data"]["mode"] == "broken"
    assert document["copies"] == 1
    assert await depth(test_broker, dead.queues.dead_queue) == 3


async def test_show_of_an_unknown_id_exits_1(
    dead: DeadLetters, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = str(uuid.uuid4())
    assert await cli(dead.settings, dead.roles, "dlq", "show", unknown) == 1
    assert f"no dead letter with message id {unknown}" in capsys.readouterr().err
    assert await find_dead_letters(test_broker, dead.queues, unknown) == []
    assert await depth(test_broker, dead.queues.dead_queue) == 3


async def test_replay_of_one_id_moves_exactly_that_one_back_and_it_is_handled(
    dead: DeadLetters, test_broker: Broker, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    flaky = str(dead.flaky.id)
    assert await cli(dead.settings, dead.roles, "dlq", "replay", flaky) == 0
    out = capsys.readouterr().out
    assert f"replayed 1 dead letter(s) from {dead.queues.dead_queue} to {dead.queues.service_queue}" in out
    assert flaky in out

    assert await handled(engine, dead.flaky_parcel) == ["flaky"]
    assert sorted(await dead_ids(test_broker, dead.queues)) == sorted(dead.ids - {flaky})


async def test_a_replayed_copy_is_a_first_attempt_that_keeps_its_identity(
    dead: DeadLetters, test_broker: Broker
) -> None:
    await dead.stop_consumer()  # so that the copy waits in the service queue to be looked at
    outcome = await replay_dead_letters(test_broker, dead.queues, [str(dead.flaky.id)])
    assert [letter.message_id for letter in outcome.done] == [str(dead.flaky.id)]

    channel = await test_broker.channel(publisher_confirms=False)
    try:
        queue = await channel.declare_queue(dead.queues.service_queue, passive=True)
        copy = await queue.get(no_ack=True)
        assert await queue.get(no_ack=True, fail=False) is None
    finally:
        await channel.close()
    assert copy.message_id == str(dead.flaky.id)
    assert (copy.type, copy.correlation_id, copy.content_type) == ("ParcelSent", "request-7", "application/json")
    assert copy.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert copy.headers[ATTEMPT_HEADER] == 0
    assert copy.headers[REPLAYED_HEADER] == 1
    assert copy.headers[ROUTING_KEY_HEADER] == "kernel.ParcelSent"
    assert REASON_HEADER not in copy.headers
    assert ERROR_HEADER not in copy.headers
    assert DEAD_AT_HEADER not in copy.headers
    assert Envelope.model_validate_json(copy.body) == dead.flaky
    assert sorted(await dead_ids(test_broker, dead.queues)) == sorted(dead.ids - {str(dead.flaky.id)})


async def test_replay_all_sends_everything_back_and_what_fails_again_returns_marked_as_replayed(
    dead: DeadLetters, test_broker: Broker, engine: AsyncEngine, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(dead.settings, dead.roles, "dlq", "replay", "--all", "--dry-run") == 0
    assert "would replay 3 dead letter(s)" in capsys.readouterr().out
    assert await depth(test_broker, dead.queues.dead_queue) == 3

    assert await cli(dead.settings, dead.roles, "dlq", "replay", "--all") == 0
    assert "replayed 3 dead letter(s)" in capsys.readouterr().out

    assert await handled(engine, dead.flaky_parcel) == ["flaky"]
    await wait_depth(test_broker, dead.queues.dead_queue, 2)  # the broken one and the garbage, dead again
    letters = (await list_dead_letters(test_broker, dead.queues)).letters
    assert {letter.message_id for letter in letters} == {str(dead.broken.id), dead.garbage_id}
    assert [letter.replayed for letter in letters] == [1, 1]


async def test_replay_of_an_unknown_id_changes_nothing_and_exits_1(
    dead: DeadLetters, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    unknown = str(uuid.uuid4())
    assert await cli(dead.settings, dead.roles, "dlq", "replay", unknown) == 1
    assert f"not found: {unknown}" in capsys.readouterr().out
    assert set(await dead_ids(test_broker, dead.queues)) == dead.ids


async def test_purge_without_yes_refuses_and_keeps_everything(
    dead: DeadLetters, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(dead.settings, dead.roles, "dlq", "purge", "--all") == 2
    assert "--yes" in capsys.readouterr().err
    assert await cli(dead.settings, dead.roles, "dlq", "purge", str(dead.broken.id)) == 2
    assert await depth(test_broker, dead.queues.dead_queue) == 3


async def test_purge_of_one_id_removes_exactly_it(
    dead: DeadLetters, test_broker: Broker, capsys: pytest.CaptureFixture[str]
) -> None:
    before = await dead_ids(test_broker, dead.queues)
    broken = str(dead.broken.id)
    assert await cli(dead.settings, dead.roles, "dlq", "purge", broken, "--yes") == 0
    assert f"purged 1 dead letter(s) from {dead.queues.dead_queue}" in capsys.readouterr().out
    assert await dead_ids(test_broker, dead.queues) == [message_id for message_id in before if message_id != broken]

    outcome = await purge_dead_letters(test_broker, dead.queues, None)
    assert {letter.message_id for letter in outcome.done} == dead.ids - {broken}
    assert await depth(test_broker, dead.queues.dead_queue) == 0


@pytest.mark.parametrize("queue_type", ["quorum", "classic"])
async def test_messages_left_in_the_queue_keep_their_order(
    test_broker: Broker, queues_to_delete: list[str], queue_type: QueueType
) -> None:
    """What the module docstring promises: requeued messages go back where they were, on either queue type."""
    queues = DeadLetterQueues(*(await _queues_of_own(test_broker, queues_to_delete, queue_type)))
    await _put(test_broker, queues.dead_queue, [f"m{i}" for i in range(6)])

    await purge_dead_letters(test_broker, queues, ["m2"])
    await replay_dead_letters(test_broker, queues, ["m4"])
    await replay_dead_letters(test_broker, queues, ["m0", "m5"], dry_run=True)
    assert await dead_ids(test_broker, queues) == ["m0", "m1", "m3", "m5"]
    assert await dead_ids(test_broker, queues) == ["m0", "m1", "m3", "m5"]


async def test_replay_to_a_missing_service_queue_fails_and_loses_nothing(
    test_broker: Broker, queues_to_delete: list[str]
) -> None:
    service_queue, dead_queue = await _queues_of_own(test_broker, queues_to_delete)
    await _put(test_broker, dead_queue, ["m0"])
    queues = DeadLetterQueues(f"{service_queue}.missing", dead_queue)
    with pytest.raises(QueueMissing):
        await replay_dead_letters(test_broker, queues, None)
    assert await dead_ids(test_broker, queues) == ["m0"]


async def test_a_queue_never_declared_is_an_error_not_an_empty_list(
    test_broker: Broker, kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = kernel_settings.model_copy(update={"service_name": f"dlq-{uuid.uuid4().hex[:6]}"})

    def roles(runtime: Runtime) -> list[BackgroundRole]:
        return [runtime.consumer(SUBSCRIPTIONS, lambda: UnitOfWork(runtime.session_factory))]

    assert await cli(settings, roles, "dlq", "list") == 1
    assert "the broker has no queue" in capsys.readouterr().err


async def test_a_service_without_a_consumer_has_no_dead_letters_to_show(
    kernel_settings: ServiceSettings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await cli(kernel_settings, relay_only, "dlq", "list") == 2
    assert "kernel-test has no event consumer" in capsys.readouterr().err


async def test_the_services_answer_dlq_as_real_processes(
    test_broker: Broker, test_servers: TestServers, amqp_namespace: str, queues_to_delete: list[str], tmp_path: Path
) -> None:
    dead_queue = f"{test_broker.topology.service_queue('notifications')}.dead"
    queues_to_delete.append(dead_queue)
    channel = await test_broker.channel(publisher_confirms=False)
    arguments = await test_broker.topology.arguments(channel)
    await channel.declare_queue(dead_queue, durable=True, arguments=arguments.dead())
    await channel.close()
    message_id = str(uuid.uuid4())
    await _put(test_broker, dead_queue, [message_id])

    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(("AMQP_", "DATABASE_"))},
        "AMQP_URL": test_servers.amqp_url,
        "AMQP_NAMESPACE": amqp_namespace,
        "DATABASE_URL": "postgresql+asyncpg://dlq@127.0.0.1:9/unused",  # required, never connected to
        "ENVIRONMENT": "test",
    }

    notifications = await _run([sys.executable, "-m", "notifications", "dlq", "list"], env, tmp_path)
    assert notifications.returncode == 0, notifications.stderr
    assert message_id in notifications.stdout
    assert dead_queue in notifications.stdout

    users = await _run([sys.executable, "-m", "users", "dlq", "list"], env, tmp_path)
    assert users.returncode == 2, users.stderr
    assert "users has no event consumer" in users.stderr


def _deep_envelope(depth: int) -> bytes:
    """A well-formed envelope but for its data, nested `depth` lists deep."""
    head = json.dumps({"id": str(uuid.uuid4()), "type": "ParcelSent", "version": 1, "source": "kernel"})[:-1]
    return f'{head}, "occurred_at": "2026-11-22T10:00:00Z", "data": {"[" * depth}{"]" * depth}}}'.encode()


@dataclass(frozen=True)
class Hostile:
    """A body no reader should trust, what `show` must print of it, and how the consumer's reason starts."""

    body: bytes
    shown: str
    reason: str


_DEEP = _deep_envelope(5_000)
_HUGE = b'{"pad": "' + b"x" * (1024 * 1024) + b'"}'  # over the consumer's limit, and over the preview
HOSTILE = {
    "deep": Hostile(_DEEP, _DEEP.decode(), "unparseable envelope: <root>: Invalid JSON: recursion limit exceeded"),
    "not-json": Hostile(b"\x00\x01 not json {", "body:\n\\x00\\x01 not json {", "unparseable envelope"),
    "not-utf8": Hostile(b'{"id": "\xff\xfe"}', 'body:\n{"id": "\\xff\\xfe"}', "unparseable envelope"),
    "huge": Hostile(
        _HUGE,
        f"\n{_HUGE[:BODY_PREVIEW_BYTES].decode()}\n… the first {BODY_PREVIEW_BYTES} bytes of {len(_HUGE)}",
        "message too large",
    ),
    "terminal-escapes": Hostile(
        b"\x1b[2J\x1b]0;owned\x07\x9b31m not json",
        "body:\n\\x1b[2J\\x1b]0;owned\\x07\\x9b31m not json",
        "unparseable envelope",
    ),
}
#: What a terminal acts on: C0 controls but newline, DEL, C1 controls.
_CONTROLS = {chr(code) for code in (*range(0x20), *range(0x7F, 0xA0))} - {"\n"}


@pytest.fixture
async def hostile_service(
    test_broker: Broker,
    engine: AsyncEngine,
    kernel_settings: ServiceSettings,
    test_servers: TestServers,
    queues_to_delete: list[str],
) -> AsyncIterator[tuple[ServiceSettings, EventConsumer[UnitOfWork]]]:
    """A service whose real consumer runs with the settings' retry delays and message size limit."""
    settings = kernel_settings.model_copy(
        update={
            "service_name": f"dlq-{uuid.uuid4().hex[:6]}",
            "amqp_url": test_servers.amqp_url,
            "consumer_retry_delays": [0.2],
        }
    )
    sessions: async_sessionmaker[Any] = create_session_factory(engine)
    consumer = EventConsumer(
        test_broker,
        service=settings.service_name,
        subscriptions=SUBSCRIPTIONS,
        uow_factory=lambda: UnitOfWork(sessions),
        retry_delays=settings.consumer_retry_delays,
        max_message_bytes=settings.consumer_max_message_bytes,
    )
    queues_to_delete.extend(consumer.queue_names)
    channel = await test_broker.channel(publisher_confirms=False)
    await consumer.declare(channel)
    await channel.close()
    task = asyncio.create_task(consumer.run())
    try:
        yield settings, consumer
    finally:
        consumer.stop()
        await asyncio.wait_for(task, 15)


@pytest.mark.parametrize("name", list(HOSTILE))
async def test_any_body_whatsoever_is_listed_shown_replayed_and_purged(
    hostile_service: tuple[ServiceSettings, EventConsumer[UnitOfWork]],
    test_broker: Broker,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    name: str,
) -> None:
    settings, consumer = hostile_service
    hostile, queues, message_id = HOSTILE[name], DeadLetterQueues.of(consumer), str(uuid.uuid4())
    patience = sum(settings.consumer_retry_delays) + 15.0  # each is dead-lettered at once: no retry is waited for

    def roles(runtime: Runtime) -> list[BackgroundRole]:
        return [runtime.consumer(SUBSCRIPTIONS, lambda: UnitOfWork(runtime.session_factory))]

    async def dlq(*argv: str) -> str:
        assert await cli(settings, roles, "dlq", *argv) == 0, argv
        out = capsys.readouterr().out
        assert not _CONTROLS & set(out)
        return out

    await publish_raw(test_broker, ParcelSent.routing_key(), hostile.body, message_id=message_id)
    await wait_depth(test_broker, queues.dead_queue, 1, within=patience)

    assert message_id in await dlq("list")
    [listed] = json.loads(await dlq("list", "--json"))["dead_letters"]
    assert listed["reason"].startswith(hostile.reason)

    shown = await dlq("show", message_id)
    assert hostile.shown in shown
    assert len(shown) < BODY_PREVIEW_BYTES + 5_000
    document = json.loads(await dlq("show", message_id, "--json"))
    assert (document["body_bytes"], document["body_truncated"]) == (
        len(hostile.body),
        len(hostile.body) > BODY_PREVIEW_BYTES,
    )
    assert document["body_json"] is None
    await dlq("show", message_id, "--save-body", str(tmp_path / "body"))
    assert (tmp_path / "body").read_bytes() == hostile.body

    assert "replayed 1 dead letter(s)" in await dlq("replay", "--all")
    async with asyncio.timeout(patience):  # the consumer refuses it again, at once
        while not (letters := (await list_dead_letters(test_broker, queues)).letters) or letters[0].replayed != 1:
            await asyncio.sleep(0.05)
    assert (letters[0].message_id, letters[0].body) == (message_id, hostile.body)

    assert "purged 1 dead letter(s)" in await dlq("purge", "--all", "--yes")
    assert await depth(test_broker, queues.dead_queue) == 0


async def _run(argv: Sequence[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    # cwd away from the repository: no `.env` there to override the environment.
    return await asyncio.to_thread(
        subprocess.run, argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )


async def _queues_of_own(
    broker: Broker, queues_to_delete: list[str], queue_type: QueueType | None = None
) -> tuple[str, str]:
    """A service queue and dead queue of a test's own, with no consumer on them, as the topology declares them."""
    service_queue = broker.topology.service_queue(f"dlq-{uuid.uuid4().hex[:6]}")
    dead_queue = f"{service_queue}.dead"
    queues_to_delete.extend([service_queue, dead_queue])
    channel = await broker.channel(publisher_confirms=False)
    arguments = await broker.topology.arguments(channel)
    if queue_type is not None:
        arguments = dataclasses.replace(arguments, queue_type=queue_type)
    await channel.declare_queue(dead_queue, durable=True, arguments=arguments.dead())
    await channel.declare_queue(service_queue, durable=True, arguments=arguments.service(dead_queue))
    await channel.close()
    return service_queue, dead_queue


async def _put(broker: Broker, queue: str, message_ids: Sequence[str]) -> None:
    """Dead letters as the consumer writes them, straight into `queue`."""
    channel = await broker.channel(publisher_confirms=True)
    try:
        for message_id in message_ids:
            message = aio_pika.Message(
                json.dumps({"id": message_id}).encode(),
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={REASON_HEADER: "non-retryable: test", ATTEMPT_HEADER: 0, ROUTING_KEY_HEADER: "kernel.Test"},
            )
            await channel.default_exchange.publish(message, routing_key=queue)
    finally:
        await channel.close()
