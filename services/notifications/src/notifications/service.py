"""The notifications use cases: the only place their rules run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastmicro.security import Principal
from notifications.models import Notification

if TYPE_CHECKING:
    from notifications.uow import NotificationsUnitOfWork


@dataclass(frozen=True, slots=True)
class Page:
    items: Sequence[Notification]
    total: int
    limit: int
    offset: int


class NotificationService:
    def __init__(self, uow: NotificationsUnitOfWork) -> None:
        self._uow = uow

    async def list_mine(self, actor: Principal, *, limit: int, offset: int) -> Page:
        """The caller's notifications, newest first: a token only ever lists its own user's."""
        async with self._uow as uow:
            items, total = await uow.notifications.page_for_user(actor.user_id, limit=limit, offset=offset)
        return Page(items, total, limit, offset)
