"""The idempotent consumer runtime on RabbitMQ: inbox, retries through delay queues, dead letters.

A service declares, in one visible list, which events it handles and with which handler:

    SUBSCRIPTIONS = [Subscription(UserDeleted, on_user_deleted)]

Topology, per service (names from `Topology`):

    fastmicro.events ──(routing keys of the subscriptions)──► <svc>.events ──► handler
    <svc>.events.retry.<ms>  TTL queues that dead-letter back into <svc>.events
    <svc>.events.dead        what cannot be handled, with the reason in its headers

What happens to each message is decided by `fastmicro.handling` (parse, the inbox and the
handler in one transaction, retry or dead letter); this module carries the decision out on the
broker. A failing handler's message is re-published to the next delay queue (attempt count in a
header) and acked only after the broker confirmed the copy; after the last delay, or at once when
the message cannot be parsed or the handler raises `NonRetryable`, it goes to the dead-letter queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue, AbstractRobustChannel
from opentelemetry.trace import SpanKind, Tracer

from fastmicro import tracing
from fastmicro.backoff import Backoff
from fastmicro.db import utcnow
from fastmicro.handler_errors import NonRetryable, RetryLater, failure_text
from fastmicro.handling import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_RETRY_DELAYS,
    Handling,
    Outcome,
    Subscription,
)
from fastmicro.inbox import InboxMessage, create_inbox, drop_inbox, inbox_table
from fastmicro.letters import (
    ATTEMPT_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    REASON_HEADER,
    ROUTING_KEY_HEADER,
    message_copy,
    routing_key_of,
)
from fastmicro.messaging import Broker, declare_events_exchange
from fastmicro.metrics import CONSUMER_HANDLER_DURATION, CONSUMER_MESSAGES
from fastmicro.uow import UnitOfWork

__all__ = [  # what services and their migrations import from here, wherever it lives
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

UowT = TypeVar("UowT", bound=UnitOfWork)


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
        self.handling = Handling(
            subscriptions, uow_factory, retry_delays=retry_delays, max_message_bytes=max_message_bytes
        )
        self._prefetch = prefetch
        # Metric labels: a type we handle, or "unknown" (any other would be a new series per sender's whim).
        self._known_types = self.handling.event_types
        self.queue_name = broker.topology.service_queue(service)
        self.dead_queue_name = f"{self.queue_name}.dead"
        self.retry_queue_names = [self._retry_queue(delay) for delay in self.handling.retry_delays]
        self._stopping = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._channel: AbstractRobustChannel | None = None
        self._backoff = Backoff("consumer_failed", cap=10.0, logger=log)

    @property
    def queue_names(self) -> list[str]:
        return [self.queue_name, *self.retry_queue_names, self.dead_queue_name]

    @property
    def routing_keys(self) -> list[str]:
        return self.handling.routing_keys

    def _retry_queue(self, delay: float) -> str:
        return f"{self.queue_name}.retry.{int(delay * 1000)}ms"

    async def declare(self, channel: AbstractRobustChannel) -> AbstractQueue:
        """Declare (idempotently) the exchange, this service's queue and bindings, delay and dead queues."""
        exchange = await declare_events_exchange(channel, self._broker.topology)
        for name, arguments in (await self.queue_arguments(channel)).items():
            queue = await channel.declare_queue(name, durable=True, arguments=arguments)
            if name == self.queue_name:
                service_queue = queue
        for key in self.routing_keys:
            await service_queue.bind(exchange, key)
        return service_queue

    async def queue_arguments(self, channel: AbstractChannel) -> dict[str, dict[str, Any]]:
        """Each queue of this consumer and its arguments; the dead queue first (the others dead-letter into it)."""
        arguments = await self._broker.topology.arguments(channel)
        return {
            self.dead_queue_name: arguments.dead(),
            self.queue_name: arguments.service(self.dead_queue_name),
            **{
                name: arguments.delay(int(delay * 1000), self.queue_name)
                for name, delay in zip(self.retry_queue_names, self.handling.retry_delays, strict=True)
            },
        }

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
            log.info("consumer_stopped", queue=self.queue_name)
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
        started = time.perf_counter()
        if tracing.TRACER is not None:
            await self._process_traced(tracing.TRACER, message, started)
            return
        with structlog.contextvars.bound_contextvars(message_id=message.message_id):
            attempt = self.handling.attempt_of((message.headers or {}).get(ATTEMPT_HEADER))
            outcome = await self.handling.deliver(message.body, attempt)
            await self._settle(message, outcome, started)

    async def _process_traced(self, tracer: Tracer, message: AbstractIncomingMessage, started: float) -> None:
        """`_process` in a consumer span, the child of the emitting transaction's context the headers carry.

        The handler's database work and the events it emits are in that span, so they carry the
        trace on; a retry or a dead letter is an event of the span, with the attempt.
        """
        headers = message.headers or {}
        attempt = self.handling.attempt_of(headers.get(ATTEMPT_HEADER))
        with (
            tracer.start_as_current_span(
                f"{self.queue_name} process",
                context=tracing.context_from(headers),
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.system": "rabbitmq",
                    "messaging.operation.type": "process",
                    "messaging.destination.name": self.queue_name,
                    "messaging.message.id": message.message_id or "",
                    "messaging.rabbitmq.destination.routing_key": routing_key_of(message),
                    "fastmicro.attempt": attempt,
                },
            ) as span,
            structlog.contextvars.bound_contextvars(message_id=message.message_id),
        ):
            outcome = await self.handling.deliver(message.body, attempt)
            if outcome.kind == "retried":
                span.add_event(
                    "retry", {"fastmicro.attempt": outcome.attempt, "fastmicro.retry.delay_s": outcome.delay or 0.0}
                )
            elif outcome.kind == "dead_lettered":
                span.add_event(
                    "dead_lettered",
                    {"fastmicro.attempt": outcome.attempt, "fastmicro.dead_reason": outcome.reason or ""},
                )
            span.set_attribute("fastmicro.outcome", outcome.kind)
            await self._settle(message, outcome, started)

    async def _settle(self, message: AbstractIncomingMessage, outcome: Outcome, started: float) -> None:
        """Carry `outcome` out: a copy where it goes next, confirmed by the broker, then the ack."""
        if outcome.kind == "retried" and outcome.delay is not None:
            await self._republish(message, self._retry_queue(outcome.delay), {ATTEMPT_HEADER: outcome.attempt})
        elif outcome.kind == "dead_lettered":
            headers: dict[str, Any] = {
                REASON_HEADER: (outcome.reason or "")[:1000],
                ATTEMPT_HEADER: outcome.attempt,
                ROUTING_KEY_HEADER: routing_key_of(message),
                DEAD_AT_HEADER: utcnow().isoformat(),
            }
            if outcome.error is not None:
                headers[ERROR_HEADER] = failure_text(outcome.error)[:1000]
            await self._republish(message, self.dead_queue_name, headers)
        await message.ack()
        event_type = self._type_label(message, outcome)
        CONSUMER_MESSAGES.labels(event_type, outcome.kind).inc()
        CONSUMER_HANDLER_DURATION.labels(event_type).observe(time.perf_counter() - started)

    async def _republish(self, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]) -> None:
        """Copy `message` to `queue` (through the default exchange) and wait for the broker's confirm."""
        if self._channel is None:
            raise RuntimeError("the consumer is not running")
        await self._channel.default_exchange.publish(message_copy(message, headers), routing_key=queue, timeout=10)

    def _type_label(self, message: AbstractIncomingMessage, outcome: Outcome) -> str:
        if outcome.envelope is not None and outcome.kind in {"handled", "duplicate"}:
            return outcome.envelope.type
        return message.type if message.type is not None and message.type in self._known_types else "unknown"
