"""What one notifications process holds (its Runtime: unit of work, background roles) and what routes take from it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.runtime import BackgroundRole, Runtime
from notifications.handlers import SUBSCRIPTIONS
from notifications.mailer import Mailer
from notifications.sender import EmailSender
from notifications.service import NotificationService
from notifications.settings import NotificationsSettings
from notifications.uow import NotificationsUnitOfWork


class Notifications(Runtime[NotificationsSettings]):
    def roles(self) -> list[BackgroundRole]:
        """The event consumer, the email sender and the inbox's retention. It publishes nothing: no outbox."""
        settings = self.settings
        sender = EmailSender(
            self.engine,
            self.uow,
            Mailer.from_settings(settings),
            retry_delays=settings.send_retry_delays,
            batch_size=settings.sender_batch_size,
            poll_interval=settings.sender_poll_interval,
            max_backoff=settings.sender_max_backoff,
            lease=settings.sender_lease,
            send_timeout=settings.smtp_timeout,
            connections=settings.smtp_connections,
        )
        return [self.consumer(SUBSCRIPTIONS, self.uow), sender, self.retention_purger(outbox=False, inbox=True)]

    def uow(self) -> NotificationsUnitOfWork:
        return NotificationsUnitOfWork(self.session_factory)


NotificationsDep = Annotated[Notifications, Depends(Notifications.current)]


async def get_notification_service(notifications: NotificationsDep) -> NotificationService:
    return NotificationService(notifications.uow())


NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]
