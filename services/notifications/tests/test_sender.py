"""The sender's lease: no transaction stays open while mail goes out, and what a lost database, a
stop or a second sender can cost. Each test has a database and an SMTP server of its own, and
drives `EmailSender`s directly (wired as main.py wires them), without the consumer.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import threading
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from pydantic import ValidationError
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from fastmicro.db import create_engine, create_session_factory, utcnow
from fastmicro.testing import migrated_database
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from notifications.dependencies import Notifications
from notifications.mailer import Mailer, MailServerUnavailable
from notifications.sender import EmailSender
from notifications.settings import NotificationsSettings
from notifications.uow import NotificationsUnitOfWork

from .conftest import make_settings
from .helpers import MailCollector, SmtpSink, eventually, eventually_async, pending_welcome

Rows = dict[uuid.UUID, dict[str, Any]]


class GatedCollector(MailCollector):
    """Accepts mail like `MailCollector`, and can catch one send in flight.

    After `hold(n)`, the message that arrives once `n` were accepted waits, unanswered, until
    `release()`; `holding` is set meanwhile. `pace` slows every other message down, so that
    several senders are at work at once.
    """

    def __init__(self) -> None:
        super().__init__()
        self.pace = 0.0
        self.holding = threading.Event()
        self.held_message_id = ""
        self._hold_at: int | None = None
        self._gate = threading.Event()

    def hold(self, accepted: int) -> None:
        self._hold_at = accepted

    def release(self) -> None:
        self._gate.set()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self._hold_at == len(self.received) and not self.holding.is_set():
            message = email.message_from_bytes(envelope.original_content or b"", policy=email.policy.default)
            self.held_message_id = str(message["Message-ID"])
            self.holding.set()
            while not self._gate.is_set():
                await asyncio.sleep(0.01)
        elif self.pace:
            await asyncio.sleep(self.pace)
        return await super().handle_DATA(server, session, envelope)


class GatedSink(SmtpSink):
    def __init__(self) -> None:
        self.gate = GatedCollector()
        super().__init__(collector=self.gate)

    def message_ids(self) -> Counter[str]:
        return Counter(str(mail.message["Message-ID"]) for mail in self.collector.received)

    async def wait_holding(self) -> None:
        await eventually(lambda: self.gate.holding.is_set() or None)


class WitnessedUnitOfWork(NotificationsUnitOfWork):
    """Keeps the errors its transactions ended with: a test sees when the sender met the cut."""

    def __init__(self, session_factory: async_sessionmaker[AsyncSession], errors: list[BaseException]) -> None:
        super().__init__(session_factory)
        self._errors = errors

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self._errors.append(exc)
        await super().__aexit__(exc_type, exc, tb)


@dataclass
class Sender:
    role: EmailSender
    engine: AsyncEngine
    database_errors: list[BaseException]
    task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.role.run())

    async def stop(self) -> None:
        self.role.stop()
        if self.task is not None:
            task, self.task = self.task, None
            await task


SenderFactory = Callable[..., Sender]


def message_id(notification_id: uuid.UUID) -> str:
    return f"<{notification_id}@notifications.fastmicro>"


def notification_id(message_id: str) -> uuid.UUID:
    return uuid.UUID(message_id.removeprefix("<").partition("@")[0])


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> str:
    return await migrated_database(database_factory, "notifications", "notifications:migrations")


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[AsyncEngine]:
    """A direct link to the test's database, for the test's own reads and writes (never cut)."""
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def sink() -> AsyncIterator[GatedSink]:
    sink = GatedSink()
    await sink.start()
    yield sink
    sink.gate.release()
    await sink.stop()


@pytest.fixture
async def senders(sink: GatedSink) -> AsyncIterator[SenderFactory]:
    """`senders(database_url, **settings)`: an EmailSender on that database, sending to `sink`."""
    built: list[Sender] = []

    def build(database_url: str, **overrides: Any) -> Sender:
        # One connection unless a test asks for more: then the sends go in the batch's order.
        overrides = {"smtp_connections": 1, **overrides}
        settings = make_settings(database_url=database_url, smtp_port=sink.port, **overrides)
        engine = create_engine(settings)
        session_factory = create_session_factory(engine)
        errors: list[BaseException] = []
        # The per-mail statements run on the driver's connection, outside a unit of work: a
        # connection the sender found broken is dropped from the pool, and that is the witness.
        event.listen(engine.sync_engine.pool, "invalidate", lambda _conn, _record, error: errors.append(error))
        role = EmailSender.from_settings(engine, lambda: WitnessedUnitOfWork(session_factory, errors), settings)
        built.append(Sender(role, engine, errors))
        return built[-1]

    yield build
    sink.gate.release()  # a send held in flight finishes, so that its sender can stop
    for sender in built:
        await sender.stop()
        await sender.engine.dispose()


async def add_pending(engine: AsyncEngine, count: int) -> list[uuid.UUID]:
    """`count` pending notifications, due now, as a handler writes them."""
    now = utcnow()
    notifications = [pending_welcome(now) for _ in range(count)]
    async with create_session_factory(engine)() as session:
        session.add_all(notifications)
        await session.commit()
    return [notification.id for notification in notifications]


async def rows(engine: AsyncEngine) -> Rows:
    async with engine.connect() as conn:
        result = await conn.execute(text("SELECT id, status, attempts, next_attempt_at, last_error FROM notifications"))
        return {row["id"]: dict(row) for row in result.mappings()}


async def all_sent(engine: AsyncEngine, count: int) -> Rows:
    async def probe() -> Rows | None:
        found = await rows(engine)
        return found if len(found) == count and all(row["status"] == "sent" for row in found.values()) else None

    return await eventually_async(probe, within=30)


async def test_a_database_cut_mid_batch_sends_no_batch_twice(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory, tcp_proxy: ProxyFactory
) -> None:
    """The cut lands while mail 6 of 20 is in flight: its outcome waits for the database, the batch is not re-sent."""
    ids = await add_pending(database, 20)
    proxy = await tcp_proxy(database_url)
    sender = senders(proxy.url_for(database_url))
    sink.gate.hold(5)
    sender.start()
    await sink.wait_holding()
    await proxy.cut()
    sink.gate.release()
    await eventually(lambda: sender.database_errors or None)  # the mail went out; its `sent` mark could not
    during_cut = await rows(database)
    await proxy.restore()
    final = await all_sent(database, len(ids))
    await sender.stop()

    mails = sink.message_ids()
    assert set(mails) == {message_id(row_id) for row_id in ids}  # every notification delivered
    assert sum(mails.values()) <= len(ids) + 1  # the promise: at most the mail in flight goes twice
    # No transaction spanned the sends: the 5 mails before the cut kept their marks.
    assert Counter(row["status"] for row in during_cut.values()) == {"sent": 5, "pending": 15}
    # This sender lived on and no other took its rows: it wrote the outcome it kept, so none went twice.
    assert set(mails.values()) == {1}
    assert {row["attempts"] for row in final.values()} == {1}


@pytest.mark.parametrize("connections", [1, 3])
async def test_a_sender_gone_with_the_database_repeats_at_most_one_mail_per_connection(
    database_url: str,
    database: AsyncEngine,
    sink: GatedSink,
    senders: SenderFactory,
    tcp_proxy: ProxyFactory,
    *,
    connections: int,
) -> None:
    """The sender dies during the cut: another sends its rows after the lease, and repeats only the mails in flight."""
    ids = await add_pending(database, 20)
    proxy = await tcp_proxy(database_url)
    # The held send has 4 s to finish once released.
    settings = {"smtp_timeout": 4.0, "sender_lease_seconds": 5.0, "smtp_connections": connections}
    first = senders(proxy.url_for(database_url), **settings)
    sink.gate.hold(5)
    first.start()
    await sink.wait_holding()
    await proxy.cut()
    sink.gate.release()
    await eventually(lambda: first.database_errors or None)
    await first.stop()  # it cannot give its rows back: they wait for the end of its lease
    left = await rows(database)
    second = senders(database_url, **settings)
    second.start()
    final = await all_sent(database, len(ids))
    await second.stop()

    mails = sink.message_ids()
    assert set(mails) == {message_id(row_id) for row_id in ids}
    # The promise: one repeat per connection at most, never a batch; the mail held at the cut is one of them.
    assert sum(mails.values()) - len(mails) <= connections
    assert mails[sink.gate.held_message_id] == 2
    if connections == 1:  # the sends go in the batch's order: the five before the held one were recorded
        assert Counter(row["status"] for row in left.values()) == {"sent": 5, "pending": 15}
    assert {row["attempts"] for row in final.values()} == {1}


async def test_a_claimed_batch_is_left_to_its_sender_with_no_lock_held_while_it_sends(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory
) -> None:
    """While a batch is in flight its rows are locked by no one, yet a second sender claims none of them."""
    ids = await add_pending(database, 5)
    runtime = Notifications.from_settings(
        # One connection: the whole batch waits behind the send held in flight.
        make_settings(database_url=database_url, smtp_port=sink.port, sender_lease_seconds=60.0, smtp_connections=1)
    )
    [first] = [role for role in runtime.roles() if isinstance(role, EmailSender)]  # as the service wires it
    second = senders(database_url)
    sink.gate.hold(0)
    try:
        before = utcnow()
        batch = asyncio.create_task(first.send_batch())
        await sink.wait_holding()
        after = utcnow()
        leased = await rows(database)
        async with database.connect() as conn, conn.begin():
            unlocked = await conn.scalar(
                text("SELECT count(*) FROM (SELECT id FROM notifications FOR UPDATE NOWAIT) AS free")
            )
        claimed_by_second = await second.role.send_batch()
        sink.gate.release()
        claimed_by_first = await batch
    finally:
        sink.gate.release()
        await runtime.close()

    assert unlocked == len(ids)  # NOWAIT did not fail: no transaction is open across the sends
    assert claimed_by_second == 0
    assert claimed_by_first == len(ids)
    for row in leased.values():  # each carries the lease main.py configured
        assert row["status"] == "pending"
        assert before + timedelta(seconds=60) <= row["next_attempt_at"] <= after + timedelta(seconds=60)
    final = await rows(database)
    assert {(row["status"], row["attempts"]) for row in final.values()} == {("sent", 1)}
    assert sink.message_ids() == Counter({message_id(row_id): 1 for row_id in ids})


async def test_two_senders_share_a_burst_and_send_each_mail_once(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory
) -> None:
    """Two replicas over one burst, with batches that outlast their lease: each mail goes exactly once."""
    sink.gate.pace = 0.1  # a batch of 20 takes 2 s: each sender renews its lease during each batch
    settings = {"sender_batch_size": 20, "smtp_timeout": 2.0, "sender_lease_seconds": 3.0}
    first, second = senders(database_url, **settings), senders(database_url, **settings)
    first.start()
    second.start()
    ids = await add_pending(database, 60)
    final = await all_sent(database, len(ids))
    await first.stop()
    await second.stop()

    assert sink.message_ids() == Counter({message_id(row_id): 1 for row_id in ids})
    assert {row["attempts"] for row in final.values()} == {1}


async def test_a_sender_stopped_mid_batch_gives_back_what_it_did_not_send(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory
) -> None:
    """Stopped with 4 of 5 unsent: those are due at once for another sender, not at the end of the lease."""
    ids = await add_pending(database, 5)
    first = senders(database_url)  # a 10 s lease (twice the SMTP timeout)
    sink.gate.hold(0)
    first.start()
    await sink.wait_holding()
    first.role.stop()
    sink.gate.release()
    await first.stop()
    stopped = await rows(database)
    now = utcnow()
    second = senders(database_url)
    claimed = await second.role.send_batch()

    sent = [row for row in stopped.values() if row["status"] == "sent"]
    given_back = [row for row in stopped.values() if row["status"] == "pending"]
    assert [row["attempts"] for row in sent] == [1]  # the send in flight finished and was recorded
    assert len(given_back) == 4
    assert all(row["next_attempt_at"] <= now and row["attempts"] == 0 for row in given_back)
    assert claimed == 4
    assert sink.message_ids() == Counter({message_id(row_id): 1 for row_id in ids})


async def test_an_outcome_is_not_written_over_a_row_another_sender_took_over(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory
) -> None:
    """A row whose lease changed hands while its mail was in flight keeps the new holder's state."""
    await add_pending(database, 3)
    sender = senders(database_url)
    sink.gate.hold(0)
    batch = asyncio.create_task(sender.role.send_batch())
    await sink.wait_holding()
    taken = notification_id(sink.gate.held_message_id)
    their_lease = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    async with database.begin() as conn:  # as another sender does once the lease has run out
        await conn.execute(
            text("UPDATE notifications SET next_attempt_at = :until WHERE id = :id"),
            {"until": their_lease, "id": taken},
        )
    sink.gate.release()
    assert await batch == 3

    final = await rows(database)
    assert (final[taken]["status"], final[taken]["attempts"]) == ("pending", 0)
    assert final[taken]["next_attempt_at"] == their_lease
    others = [row for row_id, row in final.items() if row_id != taken]
    assert {(row["status"], row["attempts"]) for row in others} == {("sent", 1)}


async def test_a_send_that_outlasts_its_deadline_ends_the_batch_and_gives_back_the_rest(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory
) -> None:
    """No send runs past the SMTP timeout (so none outlives its lease): it counts as a failed attempt."""
    await add_pending(database, 3)
    sender = senders(database_url, smtp_timeout=0.5, sender_lease_seconds=5.0)
    sink.gate.hold(0)  # never released before the sender gives up
    with pytest.raises(MailServerUnavailable):
        await sender.role.send_batch()
    now = utcnow()

    final = await rows(database)
    stuck = final[notification_id(sink.gate.held_message_id)]
    assert (stuck["status"], stuck["attempts"]) == ("pending", 1)
    assert stuck["last_error"]
    others = [row for row in final.values() if row is not stuck]
    assert all(row["attempts"] == 0 and row["next_attempt_at"] <= now for row in others)


def test_the_lease_must_outlast_a_send() -> None:
    with pytest.raises(ValidationError, match="SENDER_LEASE_SECONDS"):
        make_settings(smtp_timeout=10.0, sender_lease_seconds=10.0)
    with pytest.raises(ValidationError, match="SENDER_LEASE_SECONDS"):
        make_settings(smtp_timeout=10.0, sender_lease_seconds=5.0)
    engine = create_async_engine("postgresql+asyncpg://nobody@127.0.0.1/none")  # never connected
    with pytest.raises(ValueError, match="lease"):
        EmailSender(
            engine,
            lambda: NotificationsUnitOfWork(create_session_factory(engine)),
            Mailer.from_settings(make_settings()),
            retry_delays=[],
            lease=5.0,
            send_timeout=5.0,
        )


def test_the_default_lease_is_one_send_and_as_long_again_to_record_it() -> None:
    """Seconds, not minutes: what a crashed sender's claimed mails wait at most."""
    assert NotificationsSettings(_env_file=None).sender_lease == 20.0  # SMTP_TIMEOUT 10 s
    assert make_settings(smtp_timeout=3.0).sender_lease == 6.0
    assert make_settings(smtp_timeout=3.0, sender_lease_seconds=4.0).sender_lease == 4.0


class Clock:
    """The sender's clock, which a test moves forward: the lease's end comes without waiting for it."""

    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return utcnow() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


async def test_a_batch_that_outlasts_its_lease_renews_it_for_the_rows_not_sent_yet(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too little lease left for another send: the unsent rows get a new lease, except one another sender took."""
    ids = await add_pending(database, 3)
    clock = Clock()
    monkeypatch.setattr("notifications.sender.utcnow", clock)
    sender = senders(database_url, smtp_timeout=4.0, sender_lease_seconds=5.0)
    sink.gate.hold(0)
    batch = asyncio.create_task(sender.role.send_batch())
    await sink.wait_holding()
    in_flight = notification_id(sink.gate.held_message_id)
    claimed = await rows(database)
    [first_lease] = {row["next_attempt_at"] for row in claimed.values()}
    taken, renewed = (row_id for row_id in ids if row_id != in_flight)
    their_lease = (utcnow() + timedelta(hours=1)).replace(microsecond=0)
    async with database.begin() as conn:  # as another sender does once a lease has run out
        await conn.execute(
            text("UPDATE notifications SET next_attempt_at = :until WHERE id = :id"),
            {"until": their_lease, "id": taken},
        )
    clock.advance(2.0)  # 3 s of lease left when the send ends: less than the 4 s another send may take
    sink.gate.release()
    assert await batch == 3

    final = await rows(database)
    assert (final[in_flight]["status"], final[in_flight]["next_attempt_at"]) == ("sent", first_lease)
    # Sent under the renewed lease, whose mark its row keeps: later than the first, by the 2 s the clock moved.
    assert final[renewed]["status"] == "sent"
    assert final[renewed]["next_attempt_at"] >= first_lease + timedelta(seconds=2)
    # The row that had changed hands was neither renewed nor sent: it stays with its new holder.
    assert (final[taken]["status"], final[taken]["attempts"], final[taken]["next_attempt_at"]) == (
        "pending",
        0,
        their_lease,
    )
    assert sink.message_ids() == Counter({message_id(in_flight): 1, message_id(renewed): 1})


async def test_a_slow_send_holds_up_one_connection_not_the_batch(
    database_url: str, database: AsyncEngine, sink: GatedSink, senders: SenderFactory
) -> None:
    """With four connections, the rest of a batch goes out while one mail waits on the server."""
    ids = await add_pending(database, 10)
    sender = senders(database_url, smtp_connections=4)
    sink.gate.hold(0)
    batch = asyncio.create_task(sender.role.send_batch())
    await sink.wait_holding()

    async def all_but_one_sent() -> Rows | None:
        found = await rows(database)
        return found if sum(row["status"] == "sent" for row in found.values()) == len(ids) - 1 else None

    held = await eventually_async(all_but_one_sent)  # sent and recorded while one mail waits
    sink.gate.release()
    assert await batch == len(ids)

    in_flight = notification_id(sink.gate.held_message_id)
    assert held[in_flight]["status"] == "pending"
    assert {row["status"] for row_id, row in held.items() if row_id != in_flight} == {"sent"}
    final = await rows(database)
    assert {(row["status"], row["attempts"]) for row in final.values()} == {("sent", 1)}
    assert sink.message_ids() == Counter({message_id(row_id): 1 for row_id in ids})
