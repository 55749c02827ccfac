"""Domain events, the envelope they travel in, and the registry that maps a type back to its class.

An event class declares its `type`, `version` and `source`; its fields are the envelope's
`data`. Consumers look a message up by (type, version), never by class name, so a producer
and a consumer share the schema (`fastmicro_contracts`), not the code around it.

Versions live side by side. A new incompatible shape is a new class with the next `version`, and
an upcaster (`@upcaster(Old, New)`, declared beside the classes) turns an event of the old version
into the next one. A consumer subscribes to the newest version only; a message of an older one is
parsed by its own class, then upcast step by step (v1 -> v2 -> ...) before the handler sees it.
A producer sends the newest version of each of its types.
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
OldT = TypeVar("OldT", bound=DomainEvent)
NewT = TypeVar("NewT", bound=DomainEvent)
TargetT = TypeVar("TargetT", bound=DomainEvent)


class EventRegistry:
    """(type, version) -> event class: one class per key, so two schemas can never claim one event.

    Beside the classes, the upcasters: (type, version) -> the function that makes version + 1 of it.
    Consumers match a message to its class through their own subscriptions (`fastmicro.handling`).
    """

    def __init__(self) -> None:
        self._classes: dict[tuple[str, int], type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Callable[[Any], DomainEvent]] = {}

    def register(self, event_class: EventT) -> EventT:
        key = (event_class.type, event_class.version)
        known = self._classes.setdefault(key, event_class)
        if known is not event_class:
            raise ValueError(f"event {key} is already registered as {known.__qualname__}")
        return event_class

    def classes(self) -> list[type[DomainEvent]]:
        """Every registered event class, by type and version."""
        return [self._classes[key] for key in sorted(self._classes)]

    def newest(self) -> list[type[DomainEvent]]:
        """The newest version of each type: what its producer sends."""
        newest: dict[str, type[DomainEvent]] = {}
        for event_class in self.classes():  # by version, so the last one stays
            newest[event_class.type] = event_class
        return [newest[name] for name in sorted(newest)]

    def upcaster(self, old: type[OldT], new: type[NewT]) -> Callable[[Callable[[OldT], NewT]], Callable[[OldT], NewT]]:
        """Declare `function(old_event) -> new_event`, one version up: `@registry.upcaster(V1, V2)`.

        One step per version, so a chain reads v1 -> v2 -> v3 and each step is tested alone.
        """
        if old.type != new.type or new.version != old.version + 1:
            raise ValueError(
                f"an upcaster goes one version up the same type, not {old.type} v{old.version} -> "
                f"{new.type} v{new.version}"
            )
        for event_class in (old, new):
            if self._classes.get((event_class.type, event_class.version)) is not event_class:
                raise ValueError(f"{event_class.__qualname__} is not registered: declare it with @event first")

        def declare(function: Callable[[OldT], NewT]) -> Callable[[OldT], NewT]:
            known = self._upcasters.setdefault((old.type, old.version), function)
            if known is not function:
                raise ValueError(f"{old.type} v{old.version} already has an upcaster: {known.__qualname__}")
            return function

        return declare

    def readable_as(self, target: type[DomainEvent]) -> list[type[DomainEvent]]:
        """The classes whose messages can be read as `target`: itself, and each older version with
        an unbroken chain of upcasters up to it, newest first."""
        found = [target]
        version = target.version - 1
        while (target.type, version) in self._upcasters:
            found.append(self._classes[(target.type, version)])
            version -= 1
        return found

    def upcast(self, event: DomainEvent, target: type[TargetT]) -> TargetT:
        """`event` brought up to `target`'s version, one upcaster at a time."""
        if event.type != target.type or event.version > target.version:
            raise ValueError(f"{event.type} v{event.version} cannot become {target.type} v{target.version}")
        while event.version < target.version:
            key = (event.type, event.version)
            step = self._upcasters.get(key)
            if step is None:
                raise LookupError(f"{event.type} v{event.version} has no upcaster to v{event.version + 1}")
            made = step(event)
            expected = self._classes[(event.type, event.version + 1)]
            if type(made) is not expected:  # checked at each step: a wrong one would never reach the target
                raise TypeError(
                    f"the upcaster of {event.type} v{event.version} made a {type(made).__qualname__}, "
                    f"not {expected.__qualname__}"
                )
            event = made
        if type(event) is not target:  # the registered class of that version is another one
            raise TypeError(
                f"{target.type} v{target.version} is registered as another class than {target.__qualname__}"
            )
        return event


#: The process-wide registry; event classes register themselves with `@event`, upcasters with `@upcaster`.
registry = EventRegistry()
event: Callable[[EventT], EventT] = registry.register
upcaster = registry.upcaster
