"""The notifications service's composition root."""

from __future__ import annotations

from fastapi import FastAPI

from fastmicro.runtime import BackgroundRole, Runtime
from fastmicro.web import create_app as create_service_app
from notifications.api import router
from notifications.handlers import SUBSCRIPTIONS
from notifications.mailer import Mailer
from notifications.sender import EmailSender
from notifications.settings import NotificationsSettings
from notifications.uow import NotificationsUnitOfWork


def background_roles(runtime: Runtime) -> list[BackgroundRole]:
    """The event consumer, the email sender and the inbox's retention. It publishes nothing: no outbox."""
    settings = runtime.settings
    if not isinstance(settings, NotificationsSettings):
        raise TypeError(f"the notifications roles need NotificationsSettings, not {type(settings).__name__}")

    def uow() -> NotificationsUnitOfWork:
        return NotificationsUnitOfWork(runtime.session_factory)

    return [
        runtime.consumer(SUBSCRIPTIONS, uow),
        EmailSender(
            runtime.engine,
            uow,
            Mailer.from_settings(settings),
            retry_delays=settings.send_retry_delays,
            batch_size=settings.sender_batch_size,
            poll_interval=settings.sender_poll_interval,
            max_backoff=settings.sender_max_backoff,
            lease=settings.sender_lease,
            send_timeout=settings.smtp_timeout,
            connections=settings.smtp_connections,
        ),
        runtime.retention_purger(outbox=False, inbox=True),
    ]


def create_app(settings: NotificationsSettings | None = None) -> FastAPI:
    settings = settings or NotificationsSettings()
    return create_service_app(
        settings,
        title="fastmicro notifications",
        description=(
            "Turns user and order events into email over SMTP, and lists each user's notifications. "
            "Consumes UserCreated, UserUpdated, UserDeleted, OrderPlaced and OrderCancelled; publishes nothing."
        ),
        routers=[router],
        roles=background_roles,
        revocations=True,  # learns of deleted users from UserDeleted: their tokens get 401
        outbox=False,
    )
