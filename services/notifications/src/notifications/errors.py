from __future__ import annotations

from fastmicro.consumer import RetryLater
from notifications.models import UserId


class ContactNotKnownYet(RetryLater):
    """An order event arrived before the UserCreated it depends on: retried later, never dropped."""

    def __init__(self, user_id: UserId) -> None:
        super().__init__(f"no contact for user {user_id} yet")
        self.user_id = user_id
