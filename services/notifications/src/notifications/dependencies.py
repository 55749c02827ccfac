"""What one notifications process holds (its Runtime: unit of work, background roles) and what routes take from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.runtime import BackgroundRole, Runtime
from notifications.handlers import SUBSCRIPTIONS
from notifications.sender import EmailSender
from notifications.service import NotificationService
from notifications.settings import NotificationsSettings
from notifications.uow import NotificationsUnitOfWork


class Notifications(Runtime[NotificationsSettings]):
    def roles(self) -> list[BackgroundRole]:
        """The event consumer, the email sender and the inbox's retention. It publishes nothing: no outbox."""
        settings = self.settings
        sender = EmailSender.from_settings(self.engine, self.uow, settings)
        return [self.consumer(SUBSCRIPTIONS, self.uow), sender, self.retention_purger(outbox=False, inbox=True)]

    def uow(self) -> NotificationsUnitOfWork:
        return NotificationsUnitOfWork(self.session_factory)


NotificationsDep = Annotated[Notifications, Depends(Notifications.current)]


async def get_notification_service(notifications: NotificationsDep) -> NotificationService:
    return NotificationService(notifications.uow())


NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]
