"""What the consumer runtime does with one message, whatever carried it to the service.

`Handling.deliver(body, attempt)` is the whole decision: parse the envelope and match it to a
subscription (a message of an older version of the subscribed event is parsed by its own class and
upcast to the subscribed one, `fastmicro.events`, so a handler only ever sees the newest); run the
handler once per (message, handler) in one transaction with its unit of work and the inbox row;
and say what becomes of the message, as an `Outcome`. The consumer (`fastmicro.consumer`) takes a
message off RabbitMQ, asks this, and carries the outcome out on the broker (ack, a copy to a delay
queue or to the dead-letter queue); a test can ask the same without a broker
(`fastmicro.testing.EventDelivery`). A replayed dead letter is a message like any other: it is
upcast too.

Nothing that arrives is trusted. A body over `max_message_bytes` is dead-lettered unread; data
the event's schema refuses (the contracts bound and check every text) is dead-lettered at once,
and so is data the database refuses (SQLSTATE class 22); the attempt header only ever shortens
the retries; and a failure is logged by its type and SQLSTATE, never by its text, which can hold
the event's data (see `fastmicro.handler_errors`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

import pydantic
import structlog

from fastmicro import context
from fastmicro.db import is_connection_error, utcnow
from fastmicro.errors import ServiceUnavailable
from fastmicro.events import DomainEvent, Envelope, EventRegistry, registry
from fastmicro.handler_errors import dead_reason, failure_fields, is_permanent
from fastmicro.inbox import CLAIM_INBOX
from fastmicro.uow import UnitOfWork

log = structlog.get_logger(__name__)

DEFAULT_RETRY_DELAYS = (1.0, 5.0, 30.0, 120.0)
DEFAULT_MAX_MESSAGE_BYTES = 256 * 1024

EventT = TypeVar("EventT", bound=DomainEvent)
UowT = TypeVar("UowT", bound=UnitOfWork)

#: The words of the `consumer_messages_total` metric's `outcome` label.
OutcomeKind = Literal["handled", "duplicate", "retried", "dead_lettered"]


@dataclass(frozen=True)
class Subscription(Generic[EventT, UowT]):
    """Handle `event` with `handler(event, uow)`; the handler must not commit, the runtime does."""

    event: type[EventT]
    handler: Callable[[EventT, UowT], Awaitable[None]]

    @property
    def name(self) -> str:
        return self.handler.__name__


@dataclass(frozen=True)
class Outcome:
    """What the runtime does with a message: ack it (`handled`, `duplicate`), or copy it on and ack.

    `attempt` is the attempt header the message leaves with (for `retried`, the next attempt);
    `delay` the seconds a `retried` message waits; `reason` why a `dead_lettered` one died;
    `error` what the handler raised; `envelope` the parsed envelope (None when unparseable).
    """

    kind: OutcomeKind
    attempt: int
    envelope: Envelope | None = None
    reason: str | None = None
    error: BaseException | None = None
    delay: float | None = None


class _Refused(Exception):
    """A message no retry can help: it cannot be read, or no handler takes it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Handling(Generic[UowT]):
    """The subscriptions of one service, and the rules that decide each message's fate."""

    def __init__(
        self,
        subscriptions: Sequence[Subscription[Any, UowT]],
        uow_factory: Callable[[], UowT],
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        events: EventRegistry = registry,
    ) -> None:
        self._events = events
        self.subscriptions = {(s.event.type, s.event.version): s for s in subscriptions}
        if len(self.subscriptions) != len(subscriptions):
            raise ValueError("one subscription per event type and version")
        # (type, version) -> the subscription and the class that parses the message; a subscribed
        # version wins over an upcast one, so subscribing to an old version too is still possible.
        self._routes: dict[tuple[str, int], tuple[Subscription[Any, UowT], type[DomainEvent]]] = {
            key: (subscription, subscription.event) for key, subscription in self.subscriptions.items()
        }
        for subscription in subscriptions:
            for older in events.readable_as(subscription.event)[1:]:
                self._routes.setdefault((older.type, older.version), (subscription, older))
        self._uow_factory = uow_factory
        self.retry_delays = tuple(retry_delays)
        self.max_message_bytes = max_message_bytes

    @property
    def routing_keys(self) -> list[str]:
        return sorted(s.event.routing_key() for s in self.subscriptions.values())

    @property
    def event_types(self) -> set[str]:
        return {s.event.type for s in self.subscriptions.values()}

    @property
    def readable(self) -> list[type[DomainEvent]]:
        """Every event version this service reads: those it subscribes to, and the older ones upcast to them."""
        return [self._routes[key][1] for key in sorted(self._routes)]

    def upcast_to(self, event: type[DomainEvent]) -> type[DomainEvent] | None:
        """The subscribed version a message of `event` is upcast to; None when it is itself subscribed."""
        subscription, parsed_as = self._routes[(event.type, event.version)]
        return None if parsed_as is subscription.event else subscription.event

    def attempt_of(self, header: object) -> int:
        """The attempts already made, as the attempt header says, within 0..len(retry delays).

        Only the runtime writes the header, always as a small non-negative integer. Anything
        else (negative, not an integer) was forged or corrupted, and is read as the last attempt:
        the message runs once more at most, and a header can never buy extra runs.
        """
        last = len(self.retry_delays)
        if header is None:
            return 0
        if isinstance(header, bool) or not isinstance(header, int) or header < 0:
            log.warning("event_attempt_header_invalid", header_type=type(header).__name__, read_as=last)
            return last
        return min(header, last)

    async def deliver(self, body: bytes, attempt: int) -> Outcome:
        """Parse `body`, run its handler once, and decide: never raises for the message's sake."""
        try:
            envelope, subscription, event = self._parse(body)
        except _Refused as refused:
            log.error("event_dead_lettered", reason=refused.reason, attempt=attempt)
            return Outcome("dead_lettered", attempt, reason=refused.reason)
        with (
            structlog.contextvars.bound_contextvars(
                message_id=str(envelope.id),
                event_type=envelope.type,
                correlation_id=envelope.correlation_id,
                handler=subscription.name,
            ),
            _event_context(envelope),
        ):
            if event.version != envelope.version:
                log.info("event_upcast", from_version=envelope.version, to_version=event.version)
            try:
                ran = await self._handle(envelope, subscription, event)
            except Exception as error:  # noqa: BLE001 - dead-lettered when permanent, else retried
                return self._failed(envelope, error, attempt)
            log.info("event_handled" if ran else "event_duplicate_skipped")
            return Outcome("handled" if ran else "duplicate", attempt, envelope)

    def _parse(self, body: bytes) -> tuple[Envelope, Subscription[Any, UowT], DomainEvent]:
        if len(body) > self.max_message_bytes:  # refused unread: parsing is what it would cost
            raise _Refused(f"message too large: {len(body)} bytes, the limit is {self.max_message_bytes}")
        try:
            envelope = Envelope.model_validate_json(body)
        except pydantic.ValidationError as error:
            raise _Refused(f"unparseable envelope: {_summary(error)}") from error
        route = self._routes.get((envelope.type, envelope.version))
        if route is None:
            raise _Refused(f"no handler for {envelope.type} v{envelope.version}")
        subscription, parsed_as = route
        try:
            event = parsed_as.model_validate(envelope.data)
        except pydantic.ValidationError as error:
            raise _Refused(f"invalid {envelope.type} v{envelope.version} data: {_summary(error)}") from error
        if parsed_as is not subscription.event:
            event = _upcast(self._events, event, subscription.event)
        return envelope, subscription, event

    async def _handle(self, envelope: Envelope, subscription: Subscription[Any, UowT], event: DomainEvent) -> bool:
        """Run the handler once per (message, handler). False when the inbox says it already ran."""
        async with self._uow_factory() as uow:
            claimed = await uow.session.scalar(
                CLAIM_INBOX, {"message_id": envelope.id, "handler": subscription.name, "processed_at": utcnow()}
            )
            if claimed is None:
                return False
            await subscription.handler(event, uow)
            await uow.commit()
        return True

    def _failed(self, envelope: Envelope, error: Exception, attempt: int) -> Outcome:
        if is_permanent(error):
            return self._dead(envelope, dead_reason(error), error, attempt)
        # An outage of our own database is not the message's fault: it does not use up attempts.
        infrastructure = isinstance(error, ServiceUnavailable) or is_connection_error(error)
        next_attempt = attempt if infrastructure else attempt + 1
        if next_attempt > len(self.retry_delays):
            return self._dead(envelope, "attempts exhausted", error, attempt)
        delay = self.retry_delays[max(next_attempt, 1) - 1]
        log.warning("event_handler_failed", **failure_fields(error), attempt=next_attempt, retry_in=delay)
        return Outcome("retried", next_attempt, envelope, error=error, delay=delay)

    def _dead(self, envelope: Envelope, reason: str, error: Exception, attempt: int) -> Outcome:
        log.error("event_dead_lettered", reason=reason, **failure_fields(error), attempt=attempt)
        return Outcome("dead_lettered", attempt, envelope, reason=reason, error=error)


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


def _upcast(events: EventRegistry, event: DomainEvent, target: type[DomainEvent]) -> DomainEvent:
    """`event`, valid in its own version, as `target`; an upcaster that fails now fails every time."""
    where = f"{event.type} v{event.version} -> v{target.version}"
    try:
        return events.upcast(event, target)
    except pydantic.ValidationError as error:
        raise _Refused(f"cannot upcast {where}: {_summary(error)}") from error
    except Exception as error:  # a fault of the upcaster: its type only, the text may hold data
        raise _Refused(f"cannot upcast {where}: {type(error).__name__}") from error


def _summary(error: pydantic.ValidationError) -> str:
    return "; ".join(f"{'.'.join(map(str, e['loc'])) or '<root>'}: {e['msg']}" for e in error.errors())[:500]
