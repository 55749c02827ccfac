from __future__ import annotations

from typing import Self

from fastmicro.uow import UnitOfWork
from notifications.repository import ContactRepository, NotificationRepository


class NotificationsUnitOfWork(UnitOfWork):
    contacts: ContactRepository
    notifications: NotificationRepository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.contacts = ContactRepository(self.session)
        self.notifications = NotificationRepository(self.session)
        return self
