"""Events the users service publishes (routing keys `users.<Type>`).

The bounds are the producer's own (its API takes a name of 1 to 100 characters, its column holds an
email of 254): a consumer refuses, at parsing, what its producer could never have sent.
"""

from __future__ import annotations

from typing import Annotated, ClassVar
from uuid import UUID

from pydantic import AfterValidator, StringConstraints

from fastmicro.events import DomainEvent, event
from fastmicro.fields import storable

NAME_MAX_LENGTH = 100
EMAIL_MAX_LENGTH = 254

Name = Annotated[str, StringConstraints(min_length=1, max_length=NAME_MAX_LENGTH), AfterValidator(storable)]
Email = Annotated[str, StringConstraints(min_length=1, max_length=EMAIL_MAX_LENGTH), AfterValidator(storable)]


class UserEvent(DomainEvent):
    source: ClassVar[str] = "users"

    user_id: UUID


@event
class UserCreated(UserEvent):
    type: ClassVar[str] = "UserCreated"

    email: Email
    name: Name


@event
class UserUpdated(UserEvent):
    """Carries the state after the change."""

    type: ClassVar[str] = "UserUpdated"

    email: Email
    name: Name


@event
class UserDeleted(UserEvent):
    type: ClassVar[str] = "UserDeleted"
