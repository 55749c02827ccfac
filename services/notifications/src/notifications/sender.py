"""The email sender: delivers the pending notifications the handlers wrote, after their commit.

Woken by PostgreSQL NOTIFY on `notifications_pending` (a statement trigger on `notifications`,
fired at commit), and otherwise by the clock: it sleeps until the soonest scheduled retry, or
`poll_interval` at most. Each round claims due rows `FOR UPDATE SKIP LOCKED` (so replicas share
the work), sends them over one SMTP connection, and records each outcome in the same
transaction. A send that fails is retried after the delay for its attempt, and the notification
ends `failed` when the attempts run out or the server refuses it for good. While the mail server
or the database is down the sender pauses with exponential backoff: no hot loop.

A crash after a send and before the commit sends that email again on the next round (at least
once); the Message-ID, derived from the notification id, lets mail systems see the duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import structlog
from prometheus_client import Counter

from fastmicro.db import utcnow
from fastmicro.messaging import backoff_delay
from fastmicro.pgnotify import listen
from notifications.mailer import Mailer, MailServerUnavailable, is_permanent
from notifications.models import Notification
from notifications.uow import NotificationsUnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from notifications.mailer import MailConnection

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "notifications_pending"

#: How long to wait when due rows remain that another replica holds (or that just fell due).
_HELD_ELSEWHERE_WAIT = 0.5

EMAILS = Counter("notifications_emails_total", "Email send attempts, by outcome.", ["outcome"])


class EmailSender:
    """A background role (`run()` until `stop()`). Safe to run in several replicas."""

    def __init__(
        self,
        engine: AsyncEngine,
        uow_factory: Callable[[], NotificationsUnitOfWork],
        mailer: Mailer,
        *,
        retry_delays: Sequence[float],
        batch_size: int = 50,
        poll_interval: float = 5.0,
        max_backoff: float = 30.0,
    ) -> None:
        self._engine = engine
        self._uow_factory = uow_factory
        self._mailer = mailer
        self._retry_delays = tuple(retry_delays)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self.sent_count = 0

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(
            listen(self._engine, NOTIFY_CHANNEL, self._wake, max_backoff=self._max_backoff),
            name="notifications-listen",
        )
        failures = 0
        log.info("email_sender_started")
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self._drain()
                    next_due = await self._next_due()
                except Exception as error:  # noqa: BLE001 - mail server or database down: pause, then retry
                    failures += 1
                    delay = backoff_delay(failures, cap=self._max_backoff)
                    log.warning(
                        "email_sender_paused",
                        error=str(error),
                        error_type=type(error).__name__,
                        retry_in=round(delay, 2),
                        failures=failures,
                    )
                    await self._sleep(delay)
                    continue
                failures = 0
                await self._wait(next_due)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            log.info("email_sender_stopped", sent=self.sent_count)

    async def _drain(self) -> None:
        while not self._stopping.is_set():
            if await self.send_batch() < self._batch_size:
                return

    async def send_batch(self) -> int:
        """Claim, send and record one batch in one transaction. Returns how many it claimed.

        Raises `MailServerUnavailable` (after recording the failed attempts) when the server
        could not be reached, so that the caller pauses.
        """
        async with self._uow_factory() as uow:
            batch = await uow.notifications.claim_due(utcnow(), self._batch_size)
            if not batch:
                return 0
            outage: MailServerUnavailable | None = None
            try:
                async with self._mailer.connect() as connection:
                    for notification in batch:
                        if self._stopping.is_set():
                            break  # the rest stay pending, untouched, for the next sender
                        await self._send(connection, notification)
                        if not connection.is_open:
                            outage = MailServerUnavailable("the mail server closed the connection")
                            break
            except MailServerUnavailable as error:
                outage = error
                for notification in batch:
                    self._failed(notification, f"mail server unavailable: {error}")
            await uow.commit()
        if outage is not None:
            raise outage
        return len(batch)

    async def _send(self, connection: MailConnection, notification: Notification) -> None:
        bound = log.bind(notification_id=str(notification.id), kind=notification.kind)
        if not notification.recipient:
            notification.mark_rejected("no recipient")
            EMAILS.labels("rejected").inc()
            bound.warning("email_rejected", error="no recipient")
            return
        try:
            await connection.send(notification)
        except Exception as error:  # noqa: BLE001 - whatever one email meets, the batch goes on
            description = f"{type(error).__name__}: {error}"
            if is_permanent(error):
                notification.mark_rejected(description)
                EMAILS.labels("rejected").inc()
                bound.warning("email_rejected", error=description)
            else:
                self._failed(notification, description)
            return
        notification.mark_sent(utcnow())
        self.sent_count += 1
        EMAILS.labels("sent").inc()
        bound.info("email_sent", attempts=notification.attempts)

    def _failed(self, notification: Notification, error: str) -> None:
        notification.mark_failed_attempt(error, utcnow(), self._retry_delays)
        outcome = "failed" if notification.status == "failed" else "retry"
        EMAILS.labels(outcome).inc()
        log.warning(
            "email_send_failed",
            notification_id=str(notification.id),
            error=error,
            attempts=notification.attempts,
            gave_up=outcome == "failed",
        )

    async def _next_due(self) -> datetime | None:
        async with self._uow_factory() as uow:
            return await uow.notifications.next_due()

    async def _wait(self, next_due: datetime | None) -> None:
        """Until a NOTIFY, the soonest scheduled retry, or `poll_interval`, whichever comes first."""
        timeout = self._poll_interval
        if next_due is not None:
            until_due = (next_due - utcnow()).total_seconds()
            timeout = min(timeout, until_due if until_due > 0 else _HELD_ELSEWHERE_WAIT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    async def _sleep(self, seconds: float) -> None:
        """A pause that only `stop()` ends: a NOTIFY does not cut a backoff short."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)
