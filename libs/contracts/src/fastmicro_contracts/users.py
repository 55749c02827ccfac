"""Events the users service publishes (routing keys `users.<Type>`)."""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID

from fastmicro.events import DomainEvent, event


class UserEvent(DomainEvent):
    source: ClassVar[str] = "users"

    user_id: UUID


@event
class UserCreated(UserEvent):
    type: ClassVar[str] = "UserCreated"

    email: str
    name: str


@event
class UserUpdated(UserEvent):
    """Carries the state after the change."""

    type: ClassVar[str] = "UserUpdated"

    email: str
    name: str


@event
class UserDeleted(UserEvent):
    type: ClassVar[str] = "UserDeleted"
