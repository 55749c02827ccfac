"""Deliver events to a service's handlers as its consumer would, against the real database, with no broker.

    delivery = EventDelivery(SUBSCRIPTIONS, lambda: NotificationsUnitOfWork(sessions))
    outcome = await delivery.deliver(UserCreated(...))
    assert outcome.kind == "handled"
    assert (await delivery.deliver(outcome.envelope)).kind == "duplicate"  # a redelivery

The body goes through `fastmicro.handling`, the very code the consumer runs: the envelope is
parsed and matched by (type, version), the inbox row is claimed and the handler runs in one
transaction with the unit of work, which commits. What the consumer would then do on the broker
is the returned `Outcome`: `retried` (with the attempt and delay), `dead_lettered` (with the
reason), `handled` or `duplicate`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

from fastmicro.events import DomainEvent, Envelope, EventRegistry, registry
from fastmicro.handling import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_RETRY_DELAYS, Handling, Outcome, Subscription
from fastmicro.uow import UnitOfWork

UowT = TypeVar("UowT", bound=UnitOfWork)


class EventDelivery(Generic[UowT]):
    """A service's subscriptions and unit of work, as its `EventConsumer` holds them (same defaults)."""

    def __init__(
        self,
        subscriptions: Sequence[Subscription[Any, UowT]],
        uow_factory: Callable[[], UowT],
        *,
        retry_delays: Sequence[float] = DEFAULT_RETRY_DELAYS,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        events: EventRegistry = registry,
    ) -> None:
        self.handling = Handling(
            subscriptions, uow_factory, retry_delays=retry_delays, max_message_bytes=max_message_bytes, events=events
        )

    async def deliver(self, message: DomainEvent | Envelope | bytes, *, attempt: object = None) -> Outcome:
        """Deliver `message` once: an event in a new envelope, an envelope as it is, or any body at all.

        `attempt` is the attempt header the message arrives with (None: its first delivery); it is
        read as the runtime reads it, so a forged value is tried too.
        """
        if isinstance(message, DomainEvent):
            message = Envelope.wrap(message)
        body = message.model_dump_json().encode() if isinstance(message, Envelope) else message
        return await self.handling.deliver(body, self.handling.attempt_of(attempt))
