"""Domain events, the envelope they travel in, and the registry that maps a type back to its class.

An event class declares its `type`, `version` and `source`; its fields are the envelope's
`data`. Consumers look a message up by (type, version), never by class name, so a producer
and a consumer share the schema (`fastmicro_contracts`), not the code around it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from fastmicro import context


class DomainEvent(BaseModel):
    """Immutable. Unknown fields are ignored so that older consumers read newer producers."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: ClassVar[str]
    version: ClassVar[int] = 1
    source: ClassVar[str]

    @classmethod
    def routing_key(cls) -> str:
        return f"{cls.source}.{cls.type}"


class Envelope(BaseModel):
    """The wire format of docs/contract.md."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: uuid.UUID
    type: str
    version: int = Field(ge=1)
    source: str
    occurred_at: datetime
    correlation_id: str | None = None
    causation_id: uuid.UUID | None = None
    data: dict[str, Any]

    @classmethod
    def wrap(cls, event: DomainEvent) -> Envelope:
        """Envelope `event`, taking correlation and causation from the current request or message."""
        return cls(
            id=uuid.uuid4(),
            type=event.type,
            version=event.version,
            source=event.source,
            occurred_at=datetime.now(UTC),
            correlation_id=context.correlation_id.get(),
            causation_id=context.causation_id.get(),
            data=event.model_dump(mode="json"),
        )

    @property
    def routing_key(self) -> str:
        return f"{self.source}.{self.type}"


EventT = TypeVar("EventT", bound=type[DomainEvent])


class EventRegistry:
    """(type, version) -> event class: one class per key, so two schemas can never claim one event.

    Consumers match a message to its class through their own subscriptions (`fastmicro.handling`).
    """

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type[DomainEvent]] = {}

    def register(self, event_class: EventT) -> EventT:
        key = (event_class.type, event_class.version)
        known = self._classes.setdefault(key, event_class)
        if known is not event_class:
            raise ValueError(f"event {key} is already registered as {known.__qualname__}")
        return event_class

    def classes(self) -> list[type[DomainEvent]]:
        """Every registered event class, by type and version."""
        return [self._classes[key] for key in sorted(self._classes)]


#: The process-wide registry; event classes register themselves with `@event`.
registry = EventRegistry()
event: Callable[[EventT], EventT] = registry.register
