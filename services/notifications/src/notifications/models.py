"""The notifications entities and the rules that belong to them.

`Contact` is this service's projection of the users' events: where to write to, or, once the
user is deleted, a tombstone that no late event can bring back. `Notification` is one email
to send: written `pending` by a handler (the outbox of the SMTP side effect), then `sent`, or
`failed` once its attempts run out.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro import tracing
from fastmicro.db import Base, UUIDPrimaryKey, utcnow

UserId = uuid.UUID
NotificationId = uuid.UUID
EventId = uuid.UUID
OrderId = uuid.UUID

NotificationKind = Literal["welcome", "order_placed", "order_cancelled", "account_updated"]
NotificationStatus = Literal["pending", "sent", "failed"]
Channel = Literal["email"]

KINDS: tuple[NotificationKind, ...] = ("welcome", "order_placed", "order_cancelled", "account_updated")
STATUSES: tuple[NotificationStatus, ...] = ("pending", "sent", "failed")

#: The notification's `last_error` when its user was deleted before it went out.
CONTACT_ERASED = "contact erased"
_ERROR_LENGTH = 500


class Contact(Base):
    """Where a user is written to, as the users' events last told us."""

    __tablename__ = "contacts"

    user_id: Mapped[UserId] = mapped_column(primary_key=True)
    email: Mapped[str | None] = mapped_column(Text)
    name: Mapped[str | None] = mapped_column(Text)
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    @property
    def is_erased(self) -> bool:
        return self.erased_at is not None

    @property
    def address(self) -> str | None:
        """The email address to write to; None once erased."""
        return None if self.is_erased else self.email

    def introduce(self, *, email: str, name: str, now: datetime) -> None:
        """Apply UserCreated: the oldest state of a user, so it never overwrites details already held."""
        if self.is_erased or self.email is not None:
            return
        self.email, self.name, self.updated_at = email, name, now

    def change(self, *, email: str, name: str, now: datetime) -> None:
        """Apply UserUpdated (the state after the change). An erased contact stays erased."""
        if self.is_erased:
            return
        self.email, self.name, self.updated_at = email, name, now

    def erase(self, now: datetime) -> None:
        """Forget the user's details for good; the row stays as a tombstone. Idempotent."""
        self.email = None
        self.name = None
        if self.erased_at is None:
            self.erased_at = now
            self.updated_at = now


class Notification(UUIDPrimaryKey, Base):
    __tablename__ = "notifications"

    user_id: Mapped[UserId]
    kind: Mapped[str] = mapped_column(String(32))
    channel: Mapped[str] = mapped_column(String(16), default="email")
    recipient: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text)
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    #: The id of the event that caused it: one notification per event, however often delivered.
    event_id: Mapped[EventId] = mapped_column(unique=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    last_error: Mapped[str | None] = mapped_column(String(_ERROR_LENGTH))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: The trace of the event's handling (`traceparent`/`tracestate`) when tracing is on: the send joins it.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB)

    __table_args__ = (
        CheckConstraint(f"kind IN ({', '.join(repr(kind) for kind in KINDS)})", name="kind"),
        CheckConstraint("channel IN ('email')", name="channel"),
        CheckConstraint(f"status IN ({', '.join(repr(status) for status in STATUSES)})", name="status"),
        # The sender's only query: what is due, soonest first. Partial, so it holds only the pending.
        Index("ix_notifications_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
        # GET /notifications: a user's newest first (and UserDeleted's update by user).
        Index("ix_notifications_user_recent", "user_id", text("created_at DESC"), text("id DESC")),
    )

    @classmethod
    def pending(
        cls,
        *,
        kind: NotificationKind,
        user_id: UserId,
        recipient: str,
        subject: str,
        body: str,
        event_id: EventId,
        now: datetime,
    ) -> Notification:
        return cls(
            id=uuid.uuid4(),
            user_id=user_id,
            kind=kind,
            channel="email",
            recipient=recipient,
            subject=subject,
            body=body,
            status="pending",
            event_id=event_id,
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            created_at=now,
            sent_at=None,
            trace_context=tracing.current_carrier(),  # None while tracing is off
        )

    @property
    def message_id(self) -> str:
        """The SMTP Message-ID: derived from the id, so a re-send is recognisable as the same email."""
        return f"<{self.id}@notifications.fastmicro>"

    def lease(self, until: datetime) -> None:
        """Claim it for one sender until `until`: other senders pass it by, and it is due again then.

        The lease end is also the claim's mark: an outcome is written only while it is still there.
        """
        self.next_attempt_at = until

    def holds_lease(self, until: datetime) -> bool:
        """True while it is pending under the lease ending `until` (no other sender took it over)."""
        return self.status == "pending" and self.next_attempt_at == until

    def release(self, now: datetime) -> None:
        """Give back a claimed notification that was not sent: due at once, for any sender."""
        self.next_attempt_at = now

    def mark_sent(self, now: datetime) -> None:
        self.attempts += 1
        self.status = "sent"
        self.sent_at = now

    def mark_failed_attempt(self, error: str, now: datetime, delays: Sequence[float]) -> None:
        """Count a failed attempt: retry after `delays[n - 1]` seconds, or fail after the last one.

        `delays` has one entry per retry, so a notification gets `len(delays) + 1` attempts.
        """
        self.attempts += 1
        self.last_error = error[:_ERROR_LENGTH]
        if self.attempts > len(delays):
            self.status = "failed"
        else:
            self.next_attempt_at = now + timedelta(seconds=delays[self.attempts - 1])

    def mark_rejected(self, error: str) -> None:
        """A permanent refusal (an SMTP 5xx, an address that cannot be sent to): no retry can help."""
        self.attempts += 1
        self.last_error = error[:_ERROR_LENGTH]
        self.status = "failed"
