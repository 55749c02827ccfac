"""The idempotent consumer runtime: subscriptions, inbox, retries through delay queues, dead letters.

A service declares, in one visible list, which events it handles and with which handler:

    SUBSCRIPTIONS = [Subscription(UserDeleted, on_user_deleted)]

Topology, per service (names from `Topology`):

    fastmicro.events ──(routing keys of the subscriptions)──► <svc>.events ──► handler
    <svc>.events.retry.<ms>  TTL queues that dead-letter back into <svc>.events
    <svc>.events.dead        what cannot be handled, with the reason in its headers

Each message is handled in one transaction that first inserts (message id, handler) into the
inbox: a redelivered or duplicated message finds its row and is acked without running again.
A failing handler's message is re-published to the next delay queue (attempt count in a header)
and acked only after the broker confirmed the copy; after the last delay, or at once when the
message cannot be parsed or the handler raises `NonRetryable`, it goes to the dead-letter queue.

Nothing that arrives is trusted. A body over `max_message_bytes` is dead-lettered unread; data
the event's schema refuses (the contracts bound and check every text) is dead-lettered at once,
and so is data the database refuses (SQLSTATE class 22); the attempt header only ever shortens
the retries; and a failure is logged by its type and SQLSTATE, never by its text, which can hold
the event's data (see `fastmicro.handler_errors`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import aio_pika
import pydantic
import structlog
from aio_pika.abc import AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from sqlalchemy import DateTime, String, bindparam
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro import context
from fastmicro.backoff import Backoff
from fastmicro.db import Base, is_connection_error, utcnow
from fastmicro.errors import ServiceUnavailable
from fastmicro.events import DomainEvent, Envelope
from fastmicro.handler_errors import (
    NonRetryable,
    RetryLater,
    dead_reason,
    failure_fields,
    failure_text,
    is_permanent,
)
from fastmicro.messaging import Broker, declare_events_exchange
from fastmicro.metrics import CONSUMER_MESSAGES
from fastmicro.uow import UnitOfWork

__all__ = [  # NonRetryable and RetryLater live in handler_errors; handlers import them from here
    "ATTEMPT_HEADER",
    "DEAD_AT_HEADER",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_RETRY_DELAYS",
    "ERROR_HEADER",
    "REASON_HEADER",
    "ROUTING_KEY_HEADER",
    "EventConsumer",
    "InboxMessage",
    "NonRetryable",
    "RetryLater",
    "Subscription",
    "create_inbox",
    "drop_inbox",
    "inbox_table",
]

log = structlog.get_logger(__name__)

ATTEMPT_HEADER = "x-fastmicro-attempt"
REASON_HEADER = "x-fastmicro-dead-reason"
ERROR_HEADER = "x-fastmicro-error"
ROUTING_KEY_HEADER = "x-fastmicro-routing-key"
DEAD_AT_HEADER = "x-fastmicro-dead-at"

DEFAULT_RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0)
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024
#: What a dead letter says about its death: a copy never carries an earlier (or forged) one.
_DEATH_HEADERS = frozenset({REASON_HEADER, ERROR_HEADER, DEAD_AT_HEADER})

EventT = TypeVar("EventT", bound=DomainEvent)
UowT = TypeVar("UowT", bound=UnitOfWork)


@dataclass(frozen=True)
class Subscription(Generic[EventT, UowT]):
    """Handle `event` with `handler(event, uow)`; the handler must not commit, the runtime does."""

    event: type[EventT]
    handler: Callable[[EventT, UowT], Awaitable[None]]

    @property
    def name(self) -> str:
        return self.handler.__name__


class InboxMessage(Base):
    """Messages already handled, per handler: the dedup row commits with the handler's effects."""

    __tablename__ = "inbox"

    message_id: Mapped[UUID] = mapped_column(primary_key=True)
    handler: Mapped[str] = mapped_column(String(200), primary_key=True)
    processed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


inbox_table = InboxMessage.metadata.tables["inbox"]

# Built once: each message only binds its values (and SQLAlchemy's compiled cache does the rest).
_CLAIM_INBOX = (
    insert(inbox_table)
    .values(message_id=bindparam("message_id"), handler=bindparam("handler"), processed_at=bindparam("processed_at"))
    .on_conflict_do_nothing()
    .returning(inbox_table.c.message_id)
)


def create_inbox(bind: Connection) -> None:
    """For a consuming service's Alembic migration: `create_inbox(op.get_bind())`."""
    inbox_table.create(bind)


def drop_inbox(bind: Connection) -> None:
    inbox_table.drop(bind)


class _DeadLetter(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class EventConsumer(Generic[UowT]):
    """Consumes `<service>.events`. Safe in several replicas: they compete on the one queue."""

    def __init__(
        self,
        broker: Broker,
        *,
        service: str,
        subscriptions: Sequence[Subscription[Any, UowT]],
        uow_factory: Callable[[], UowT],
        prefetch: int = 16,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    ) -> None:
        self._broker = broker
        self._service = service
        self._subscriptions = {(s.event.type, s.event.version): s for s in subscriptions}
        if len(self._subscriptions) != len(subscriptions):
            raise ValueError("one subscription per event type and version")
        self._uow_factory = uow_factory
        self._prefetch = prefetch
        self._retry_delays = tuple(retry_delays)
        self._max_message_bytes = max_message_bytes
        # Metric labels: a type we handle, or "unknown" (any other would be a new series per sender's whim).
        self._known_types = {s.event.type for s in subscriptions}
        topology = broker.topology
        self.queue_name = topology.service_queue(service)
        self.dead_queue_name = f"{self.queue_name}.dead"
        self.retry_queue_names = [f"{self.queue_name}.retry.{int(delay * 1000)}ms" for delay in self._retry_delays]
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._channel: AbstractRobustChannel | None = None
        self._backoff = Backoff("consumer_failed", cap=10.0, logger=log)
        self.handled_count = 0
        self.duplicate_count = 0

    @property
    def queue_names(self) -> list[str]:
        return [self.queue_name, *self.retry_queue_names, self.dead_queue_name]

    @property
    def routing_keys(self) -> list[str]:
        return sorted(s.event.routing_key() for s in self._subscriptions.values())

    async def declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        """Declare (idempotently) the exchange, this service's queue and bindings, delay and dead queues."""
        exchange = await declare_events_exchange(channel, self._broker.topology)
        queue = await channel.declare_queue(self.queue_name, durable=True)
        for key in self.routing_keys:
            await queue.bind(exchange, key)
        for name, delay in zip(self.retry_queue_names, self._retry_delays, strict=True):
            await channel.declare_queue(
                name,
                durable=True,
                arguments={
                    "x-message-ttl": int(delay * 1000),
                    "x-dead-letter-exchange": "",
                    "x-dead-letter-routing-key": self.queue_name,
                },
            )
        await channel.declare_queue(self.dead_queue_name, durable=True)
        return queue

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Consume until `stop()`; then take no more messages, finish those in hand, close.

        A broker that is down (at start or later) is waited for with backoff; aio-pika's robust
        channel resumes consuming by itself after a reconnect.
        """
        while not self._stopping.is_set():
            try:
                await self._consume()
            except Exception as error:  # noqa: BLE001 - any broker failure: wait, then start over
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._backoff.failed(error))

    async def _consume(self) -> None:
        channel = await self._broker.channel(publisher_confirms=True)
        self._channel = channel
        try:
            await channel.set_qos(prefetch_count=self._prefetch)
            queue = await self.declare(channel)
            tag = await queue.consume(self._on_message)
            self._backoff.succeeded()  # a later failure starts again from a short pause
            log.info("consumer_started", queue=self.queue_name, routing_keys=self.routing_keys)
            await self._stopping.wait()
            with contextlib.suppress(Exception):
                await queue.cancel(tag)
            await self._idle.wait()  # the messages in hand finish; the rest return to the queue
            log.info("consumer_stopped", queue=self.queue_name, handled=self.handled_count)
        finally:
            with contextlib.suppress(Exception):
                await channel.close()

    async def _on_message(self, message: AbstractIncomingMessage) -> None:
        if self._stopping.is_set():
            await message.nack(requeue=True)
            return
        task = asyncio.current_task()
        if task is not None:
            self._in_flight.add(task)
            self._idle.clear()
        try:
            await self._process(message)
        finally:
            if task is not None:
                self._in_flight.discard(task)
            if not self._in_flight:
                self._idle.set()

    async def _process(self, message: AbstractIncomingMessage) -> None:
        with structlog.contextvars.bound_contextvars(message_id=message.message_id):
            attempt = self._attempt_of(message)
            try:
                envelope, subscription, event = self._parse(message)
            except _DeadLetter as dead:
                await self._dead_letter(message, dead.reason, attempt)
                return
            with (
                structlog.contextvars.bound_contextvars(
                    message_id=str(envelope.id),
                    event_type=envelope.type,
                    correlation_id=envelope.correlation_id,
                    handler=subscription.name,
                ),
                _event_context(envelope),
            ):
                await self._run(message, envelope, subscription, event, attempt)

    async def _run(
        self,
        message: AbstractIncomingMessage,
        envelope: Envelope,
        subscription: Subscription[Any, UowT],
        event: DomainEvent,
        attempt: int,
    ) -> None:
        try:
            ran = await self._handle(envelope, subscription, event)
        except Exception as error:  # noqa: BLE001 - dead-lettered when permanent, else retried
            if is_permanent(error):
                await self._dead_letter(message, dead_reason(error), attempt, error)
            else:
                await self._retry(message, attempt, error)
            return
        await message.ack()
        if ran:
            self.handled_count += 1
        else:
            self.duplicate_count += 1
        CONSUMER_MESSAGES.labels(envelope.type, "handled" if ran else "duplicate").inc()
        log.info("event_handled" if ran else "event_duplicate_skipped")

    def _parse(self, message: AbstractIncomingMessage) -> tuple[Envelope, Subscription[Any, UowT], DomainEvent]:
        if len(message.body) > self._max_message_bytes:  # refused unread: parsing is what it would cost
            raise _DeadLetter(f"message too large: {len(message.body)} bytes, the limit is {self._max_message_bytes}")
        try:
            envelope = Envelope.model_validate_json(message.body)
        except pydantic.ValidationError as error:
            raise _DeadLetter(f"unparseable envelope: {_summary(error)}") from error
        subscription = self._subscriptions.get((envelope.type, envelope.version))
        if subscription is None:
            raise _DeadLetter(f"no handler for {envelope.type} v{envelope.version}")
        try:
            event = subscription.event.model_validate(envelope.data)
        except pydantic.ValidationError as error:
            raise _DeadLetter(f"invalid {envelope.type} v{envelope.version} data: {_summary(error)}") from error
        return envelope, subscription, event

    async def _handle(self, envelope: Envelope, subscription: Subscription[Any, UowT], event: DomainEvent) -> bool:
        """Run the handler once per (message, handler). False when the inbox says it already ran."""
        async with self._uow_factory() as uow:
            claimed = await uow.session.scalar(
                _CLAIM_INBOX, {"message_id": envelope.id, "handler": subscription.name, "processed_at": utcnow()}
            )
            if claimed is None:
                return False
            await subscription.handler(event, uow)
            await uow.commit()
        return True

    async def _retry(self, message: AbstractIncomingMessage, attempt: int, error: Exception) -> None:
        # An outage of our own database is not the message's fault: it does not use up attempts.
        infrastructure = isinstance(error, ServiceUnavailable) or is_connection_error(error)
        next_attempt = attempt if infrastructure else attempt + 1
        if next_attempt > len(self._retry_delays):
            await self._dead_letter(message, "attempts exhausted", attempt, error)
            return
        queue = self.retry_queue_names[max(next_attempt, 1) - 1]
        log.warning("event_handler_failed", **failure_fields(error), attempt=next_attempt, retry_via=queue)
        CONSUMER_MESSAGES.labels(self._type_label(message), "retried").inc()
        await self._republish(message, queue, {ATTEMPT_HEADER: next_attempt})
        await message.ack()

    async def _dead_letter(
        self, message: AbstractIncomingMessage, reason: str, attempt: int, error: BaseException | None = None
    ) -> None:
        fields = failure_fields(error) if error is not None else {}
        log.error("event_dead_lettered", reason=reason, **fields, attempt=attempt)
        CONSUMER_MESSAGES.labels(self._type_label(message), "dead_lettered").inc()
        headers: dict[str, Any] = {
            REASON_HEADER: reason[:1000],
            ATTEMPT_HEADER: attempt,
            ROUTING_KEY_HEADER: message.headers.get(ROUTING_KEY_HEADER) or message.routing_key or "",
            DEAD_AT_HEADER: utcnow().isoformat(),
        }
        if error is not None:
            headers[ERROR_HEADER] = failure_text(error)[:1000]
        await self._republish(message, self.dead_queue_name, headers)
        await message.ack()

    async def _republish(self, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]) -> None:
        """Copy `message` to `queue` (through the default exchange) and wait for the broker's confirm."""
        kept = {key: value for key, value in (message.headers or {}).items() if key not in _DEATH_HEADERS}
        copy = aio_pika.Message(
            message.body,
            headers={
                **kept,
                ROUTING_KEY_HEADER: message.headers.get(ROUTING_KEY_HEADER) or message.routing_key or "",
                **headers,
            },
            content_type=message.content_type,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            message_id=message.message_id,
            type=message.type,
            correlation_id=message.correlation_id,
            timestamp=message.timestamp,
        )
        if self._channel is None:
            raise RuntimeError("the consumer is not running")
        await self._channel.default_exchange.publish(copy, routing_key=queue, timeout=10)

    def _attempt_of(self, message: AbstractIncomingMessage) -> int:
        """The attempts already made, as the header says, within 0..len(retry delays).

        Only this runtime writes the header, always as a small non-negative integer. Anything
        else (negative, not an integer) was forged or corrupted, and is read as the last attempt:
        the message runs once more at most, and a header can never buy extra runs.
        """
        last = len(self._retry_delays)
        value = (message.headers or {}).get(ATTEMPT_HEADER)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            log.warning("event_attempt_header_invalid", header_type=type(value).__name__, read_as=last)
            return last
        return min(value, last)

    def _type_label(self, message: AbstractIncomingMessage) -> str:
        return message.type if message.type is not None and message.type in self._known_types else "unknown"


@contextlib.contextmanager
def _event_context(envelope: Envelope) -> Iterator[None]:
    """Events emitted while handling `envelope` carry its correlation id, and its id as causation."""
    correlation = context.correlation_id.set(envelope.correlation_id)
    causation = context.causation_id.set(envelope.id)
    try:
        yield
    finally:
        context.correlation_id.reset(correlation)
        context.causation_id.reset(causation)


def _summary(error: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors())[:500]
