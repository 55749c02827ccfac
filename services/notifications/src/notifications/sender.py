"""The email sender: delivers the pending notifications the handlers wrote, after their commit.

Woken by PostgreSQL NOTIFY on `notifications_pending` (a statement trigger on `notifications`,
fired at commit), and otherwise by the clock: it sleeps until the soonest scheduled retry, or
`poll_interval` at most. A send that fails is retried after the delay for its attempt, and the
notification ends `failed` when the attempts run out or the server refuses it for good. While
the mail server or the database is down the sender pauses with exponential backoff: no hot loop.

Each round claims due rows under a lease, in one short transaction: `FOR UPDATE SKIP LOCKED`
(so replicas share the work), with `next_attempt_at` pushed to the lease's end, so that other
senders pass them by until then. No transaction stays open while mail goes out: the rows are
sent over up to `connections` SMTP connections at once (a slow send holds up one connection,
not the batch), and each outcome is written in a transaction of its own, only
while the row still carries this lease (one that another sender took over once the lease ran
out is left to that sender). A send starts only when it can end before the lease does (each
is bounded by the SMTP timeout): when too little lease is left, the unsent rows' lease is
renewed first, so the lease only has to outlast one send and its record, never a whole batch.
What is still unsent when the sender stops or loses the mail server is released, due at once.

The lease end is also the mark an outcome is written under. A renewal keeps that sound: it
moves the mark only of rows that still carry the old one (in one transaction, with the rows
locked), and the sender takes the new mark only once that transaction has committed. Should
that commit be lost, the renewed rows wait for the new lease's end: never sent twice.

Delivery is at least once, with at most one duplicate per SMTP connection when the sender
loses its database or dies, never a batch: only an email sent just before the database went
away can lack its `sent` mark. The sender keeps those outcomes and writes them once the
database is back (if no other sender took the rows meanwhile); if it dies first, they go again. After a crash
(SIGKILL) the claimed rows not sent are due again when their lease ends: at most one lease
(`SENDER_LEASE_SECONDS`) after the claim or the last renewal. The Message-ID, derived from the
notification id, lets mail systems see a duplicate.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

import structlog
from opentelemetry.trace import SpanKind, Tracer
from prometheus_client import Counter

from fastmicro import tracing
from fastmicro.backoff import Backoff
from fastmicro.db import utcnow
from fastmicro.pgnotify import listen
from notifications.mailer import Mailer, MailServerUnavailable, is_permanent
from notifications.models import Notification, NotificationId
from notifications.repository import PENDING_CHANNEL, SenderLedger
from notifications.uow import NotificationsUnitOfWork

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from notifications.mailer import MailConnection
    from notifications.settings import NotificationsSettings

log = structlog.get_logger(__name__)


#: How long to wait when due rows remain that another replica is claiming (or that just fell due).
_HELD_ELSEWHERE_WAIT = 0.5

EMAILS = Counter("notifications_emails_total", "Email send attempts, by outcome.", ["outcome"])
for _outcome in ("sent", "retry", "failed", "rejected"):
    EMAILS.labels(_outcome)  # every outcome a series from the start: rate() and alerts need no first event

OutcomeKind = Literal["sent", "retry", "rejected"]


@dataclass(frozen=True)
class _Outcome:
    """What one send came to, to be written to its row: `retry` is a failure a later attempt may not meet."""

    notification_id: NotificationId
    kind: OutcomeKind
    at: datetime
    error: str = ""


@dataclass
class _Held:
    """What this sender claimed and has not settled: rows not sent yet, and outcomes not written yet.

    Kept across rounds: when the database fails mid-batch, the next round settles it first.
    `guard` serialises taking a row and renewing the lease between the batch's connections.
    """

    lease_until: datetime
    unsent: list[NotificationId]
    unwritten: list[tuple[_Outcome, datetime]] = field(default_factory=list)  # with the lease mark of its row
    stopped_by: str = ""  # why the batch ended before its last row, for the log
    guard: asyncio.Lock = field(default_factory=asyncio.Lock)


class EmailSender:
    """A background role (`run()` until `stop()`). Safe to run in several replicas."""

    kind = "sender"  #: as the service's manifest names it ([tool.fastmicro] roles)

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
        lease: float = 20.0,
        send_timeout: float = 10.0,
        connections: int = 4,
    ) -> None:
        if lease <= send_timeout:
            raise ValueError(f"the lease ({lease}s) must be longer than a send may take ({send_timeout}s)")
        self._engine = engine
        self._ledger = SenderLedger(engine)
        self._uow_factory = uow_factory
        self._mailer = mailer
        self._retry_delays = tuple(retry_delays)
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._lease = timedelta(seconds=lease)
        self._send_timeout = send_timeout
        self._connections = connections
        self._held: _Held | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    @classmethod
    def from_settings(
        cls,
        engine: AsyncEngine,
        uow_factory: Callable[[], NotificationsUnitOfWork],
        settings: NotificationsSettings,
    ) -> EmailSender:
        """The sender as the settings describe it: mailer, retries, batches, lease, connections."""
        return cls(
            engine,
            uow_factory,
            Mailer.from_settings(settings),
            retry_delays=settings.send_retry_delays,
            batch_size=settings.sender_batch_size,
            poll_interval=settings.sender_poll_interval,
            max_backoff=settings.sender_max_backoff,
            lease=settings.sender_lease,
            send_timeout=settings.smtp_timeout,
            connections=settings.smtp_connections,
        )

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        listener = asyncio.create_task(
            listen(self._engine, PENDING_CHANNEL, self._wake, max_backoff=self._max_backoff),
            name="notifications-listen",
        )
        backoff = Backoff("email_sender_paused", cap=self._max_backoff, logger=log)
        log.info("email_sender_started")
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self._drain()
                    next_due = await self._ledger.next_due()
                except Exception as error:  # noqa: BLE001 - mail server or database down: pause, then retry
                    await self._sleep(backoff.failed(error))
                    continue
                backoff.succeeded()
                await self._wait(next_due)
        finally:
            await self._settle_on_exit()
            await self._mailer.close()
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener
            log.info("email_sender_stopped")

    async def _drain(self) -> None:
        while not self._stopping.is_set():
            if await self.send_batch() < self._batch_size:
                return

    async def send_batch(self) -> int:
        """Claim one batch under a lease, send it and write each outcome as it comes. Returns how many it claimed.

        Raises `MailServerUnavailable` when the mail server could not be reached (after recording
        a failed attempt for the batch) or went away (after releasing the rest), and the database's
        error when it fails: the caller pauses, and the next call first settles what this one held.
        """
        await self._settle()
        claimed = await self._claim()
        if claimed is None:
            return 0
        held, batch = claimed
        queue = deque(batch)
        async with contextlib.AsyncExitStack() as connections:
            try:
                first = await connections.enter_async_context(self._mailer.connect())
            except MailServerUnavailable as error:  # nothing was sent
                await self._record_unreachable(held, error)
                raise
            more = await asyncio.gather(
                *(
                    connections.enter_async_context(self._mailer.connect())
                    for _ in range(min(self._connections, len(batch)) - 1)
                ),
                return_exceptions=True,  # a connection refused here leaves the batch to the others
            )
            opened = [first, *(c for c in more if not isinstance(c, BaseException))]
            ended = await asyncio.gather(*(self._send_over(c, queue, held) for c in opened), return_exceptions=True)
        await self._settle()  # releases what is left unsent
        failures = [error for error in ended if isinstance(error, BaseException)]
        # The database's error first: it is what the next round must settle.
        failures.sort(key=lambda error: isinstance(error, MailServerUnavailable))
        if failures:
            raise failures[0]
        return len(batch)

    async def _send_over(self, connection: MailConnection, queue: deque[Notification], held: _Held) -> None:
        """Send the batch's next rows over one connection until none is left, or the batch must stop."""
        try:
            while (taken := await self._take(queue, held)) is not None:
                notification, mark = taken
                outage = await self._send(connection, notification, mark, held)
                if outage is not None:
                    held.stopped_by = held.stopped_by or "mail_server_gone"
                    raise outage
        except BaseException:
            held.stopped_by = held.stopped_by or "failed"  # the other connections take no more rows
            raise

    async def _take(self, queue: deque[Notification], held: _Held) -> tuple[Notification, datetime] | None:
        """The next row to send, with the lease mark it carries; None when the batch is done or must stop."""
        async with held.guard:
            while queue:
                if self._stopping.is_set():
                    held.stopped_by = held.stopped_by or "stopping"
                if held.stopped_by:
                    return None
                if utcnow() + timedelta(seconds=self._send_timeout) >= held.lease_until:
                    await self._renew(held)  # a send begun now might outlast the lease
                notification = queue.popleft()
                if notification.id in held.unsent:  # else settled meanwhile, or taken over by another sender
                    held.unsent.remove(notification.id)  # from here on it may have gone out: never released
                    return notification, held.lease_until
            return None

    async def _claim(self) -> tuple[_Held, Sequence[Notification]] | None:
        """Lease up to a batch of due rows in one short transaction (None when none is due).

        The rows stay readable after the commit (the session factory does not expire them).
        """
        async with self._uow_factory() as uow:
            now = utcnow()
            lease_until = now + self._lease
            batch = await uow.notifications.lease_due(now, self._batch_size, lease_until)
            if not batch:
                return None
            # Held before the commit: should the commit be lost, the next round releases what it leased.
            held = self._held = _Held(lease_until, [notification.id for notification in batch])
            await uow.commit()
        log.debug("email_batch_claimed", claimed=len(batch), lease_until=lease_until.isoformat())
        return held, batch

    async def _renew(self, held: _Held) -> None:
        """Extend the lease of the rows not sent yet; drop those that no longer carry it (taken over)."""
        async with self._uow_factory() as uow:
            lease_until = utcnow() + self._lease
            renewed = await _lock_held(uow, held)
            for notification in renewed:
                notification.lease(lease_until)
            await uow.commit()
        dropped = len(held.unsent) - len(renewed)
        held.lease_until, held.unsent = lease_until, [notification.id for notification in renewed]
        log.debug("email_lease_renewed", renewed=len(renewed), dropped=dropped, lease_until=lease_until.isoformat())

    async def _send(
        self, connection: MailConnection, notification: Notification, mark: datetime, held: _Held
    ) -> MailServerUnavailable | None:
        """Send one email and write its outcome; an error when the connection can serve no more."""
        if tracing.TRACER is not None and notification.trace_context is not None:
            return await self._send_traced(tracing.TRACER, connection, notification, mark, held)
        outcome, broken = await self._deliver(connection, notification)
        unwritten = (outcome, mark)
        held.unwritten.append(unwritten)
        await self._write(outcome, mark)
        held.unwritten.remove(unwritten)
        return broken

    async def _send_traced(
        self, tracer: Tracer, connection: MailConnection, notification: Notification, mark: datetime, held: _Held
    ) -> MailServerUnavailable | None:
        """`_send` in a span of the trace the notification was written in (the event's handling)."""
        with tracer.start_as_current_span(
            "smtp send",
            context=tracing.context_from(notification.trace_context),
            kind=SpanKind.CLIENT,
            attributes={"fastmicro.notification_id": str(notification.id), "fastmicro.attempt": notification.attempts},
        ) as span:
            outcome, broken = await self._deliver(connection, notification)
            span.set_attribute("fastmicro.outcome", outcome.kind)
            unwritten = (outcome, mark)
            held.unwritten.append(unwritten)
            await self._write(outcome, mark)
            held.unwritten.remove(unwritten)
            return broken

    async def _deliver(
        self, connection: MailConnection, notification: Notification
    ) -> tuple[_Outcome, MailServerUnavailable | None]:
        if not notification.recipient:
            return _Outcome(notification.id, "rejected", utcnow(), "no recipient"), None
        deadline = asyncio.timeout(self._send_timeout)  # the whole send, so that it ends within the lease
        try:
            async with deadline:
                await connection.send(notification)
        except Exception as error:  # noqa: BLE001 - whatever one email meets, the batch goes on
            description = f"{type(error).__name__}: {error}"
            if deadline.expired():
                # Cut off mid-command: the connection's replies are out of step, so it serves no more.
                description = f"the send took longer than {self._send_timeout}s"
                return _Outcome(notification.id, "retry", utcnow(), description), MailServerUnavailable(description)
            kind: OutcomeKind = "rejected" if is_permanent(error) else "retry"
            outcome = _Outcome(notification.id, kind, utcnow(), description)
        else:
            outcome = _Outcome(notification.id, "sent", utcnow())
        if not connection.is_open:
            return outcome, MailServerUnavailable("the mail server closed the connection")
        return outcome, None

    async def _write(self, outcome: _Outcome, lease_until: datetime) -> None:
        """Write one outcome in its own transaction, unless another sender took the row over."""
        bound = log.bind(notification_id=str(outcome.notification_id), outcome=outcome.kind)
        if outcome.kind == "sent" and await self._ledger.record_sent(outcome.notification_id, lease_until, outcome.at):
            EMAILS.labels("sent").inc()
            bound.info("email_sent")
            return
        async with self._uow_factory() as uow:
            rows = await uow.notifications.lock_all([outcome.notification_id])
            notification = rows[0] if rows else None
            if notification is None or not notification.holds_lease(lease_until) or outcome.kind == "sent":
                bound.warning(
                    "email_outcome_superseded",
                    status=notification.status if notification else None,
                    reason="the row is settled, or leased by another sender",
                )
                return
            if outcome.kind == "rejected":
                notification.mark_rejected(outcome.error)
            else:
                notification.mark_failed_attempt(outcome.error, outcome.at, self._retry_delays)
            await uow.commit()
        if outcome.kind == "rejected":
            EMAILS.labels("rejected").inc()
            bound.warning("email_rejected", kind=notification.kind, error=outcome.error)
        else:
            self._log_failed(notification, outcome.error)

    async def _record_unreachable(self, held: _Held, error: MailServerUnavailable) -> None:
        """A failed attempt for each claimed row, in one transaction: the server could not be reached."""
        description = f"mail server unavailable: {error}"
        async with self._uow_factory() as uow:
            failed = await _lock_held(uow, held)
            now = utcnow()
            for notification in failed:
                notification.mark_failed_attempt(description, now, self._retry_delays)
            await uow.commit()
        self._held = None
        for notification in failed:
            self._log_failed(notification, description)

    async def _settle(self) -> None:
        """Write the outcomes a lost database kept from their rows, then release the unsent rows: due at once."""
        held = self._held
        if held is None:
            return
        while held.unwritten:
            outcome, mark = held.unwritten[0]
            await self._write(outcome, mark)
            held.unwritten.pop(0)
        if held.unsent:
            async with self._uow_factory() as uow:
                now = utcnow()
                released = await _lock_held(uow, held)
                for notification in released:
                    notification.release(now)
                if released:
                    await uow.notifications.wake_senders()
                await uow.commit()
            log.info("email_batch_released", released=len(released), reason=held.stopped_by or "interrupted")
        self._held = None

    async def _settle_on_exit(self) -> None:
        """Best effort: a sender stopped while the database was down leaves its rows to their lease."""
        if self._held is None:
            return
        try:
            await self._settle()
        except Exception as error:  # noqa: BLE001 - the lease frees the rows anyway
            log.warning(
                "email_sender_left_leased",
                unsent=len(self._held.unsent) if self._held else 0,
                unwritten=len(self._held.unwritten) if self._held else 0,
                error=str(error),
                error_type=type(error).__name__,
            )

    def _log_failed(self, notification: Notification, error: str) -> None:
        outcome = "failed" if notification.status == "failed" else "retry"
        EMAILS.labels(outcome).inc()
        log.warning(
            "email_send_failed",
            notification_id=str(notification.id),
            error=error,
            attempts=notification.attempts,
            gave_up=outcome == "failed",
        )

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


async def _lock_held(uow: NotificationsUnitOfWork, held: _Held) -> list[Notification]:
    """The rows `held` has not sent that still carry its lease, locked until the transaction ends.

    A row missing from the answer was settled meanwhile (an erased contact) or taken over by
    another sender once the lease ran out: it is no longer this sender's to renew, fail or release.
    """
    return [row for row in await uow.notifications.lock_all(held.unsent) if row.holds_lease(held.lease_until)]
