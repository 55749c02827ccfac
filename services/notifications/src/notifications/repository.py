from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import bindparam, case, func, literal_column, select, update
from sqlalchemy.dialects.postgresql import insert

from fastmicro.db import driver_connection, utcnow
from fastmicro.repository import SQLAlchemyRepository, column_values, table_of
from notifications.models import CONTACT_ERASED, Contact, Notification, NotificationId, UserId

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession


class ContactRepository(SQLAlchemyRepository[Contact, UserId]):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session, Contact)

    async def lock(self, user_id: UserId) -> Contact:
        """The user's contact, locked until the transaction ends; a blank one is inserted first if none exists.

        The handlers of one user's events serialise on this row: an erasure and a late
        UserCreated or UserUpdated cannot interleave, whatever order they commit in.
        """
        await self.session.execute(
            insert(Contact).values(user_id=user_id, updated_at=utcnow()).on_conflict_do_nothing()
        )
        return (
            await self.session.scalars(
                select(Contact)
                .where(Contact.user_id == user_id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).one()

    async def get_shared(self, user_id: UserId) -> Contact | None:
        """The user's contact, share-locked: it cannot be erased before this transaction ends."""
        return await self.session.scalar(_GET_SHARED, {"user_id": user_id})


#: Built once: every order event reads its contact so, and building the statement cost more than running it.
_GET_SHARED = (
    select(Contact)
    .where(Contact.user_id == bindparam("user_id"))
    .with_for_update(read=True)
    .execution_options(populate_existing=True)
)


#: The channel the sender LISTENs on; migration 0001's insert trigger notifies it at commit.
PENDING_CHANNEL = "notifications_pending"

#: Written as a literal, not a bound parameter: only then can PostgreSQL prove that a query
#: implies the predicate of the partial index `ix_notifications_due`, in a prepared plan too.
_PENDING = Notification.status == literal_column("'pending'")


#: Built once, on the table: the ORM's bulk insert rebuilt it from the values of every notification.
_NOTIFICATIONS = table_of(Notification)
_ADD_ONCE = (
    insert(_NOTIFICATIONS)
    .on_conflict_do_nothing(index_elements=[_NOTIFICATIONS.c.event_id])
    .returning(_NOTIFICATIONS.c.id)
)


class NotificationRepository(SQLAlchemyRepository[Notification, NotificationId]):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session, Notification)

    async def add_once(self, notification: Notification) -> bool:
        """Insert `notification` unless one exists for its event already; True when inserted."""
        return await self.session.scalar(_ADD_ONCE, column_values(notification)) is not None

    async def erase_recipient(self, user_id: UserId) -> int:
        """Blank the address and text of every notification of `user_id`; fail those not sent yet."""
        pending = Notification.status == "pending"
        result = await self.session.execute(
            update(Notification)
            .where(Notification.user_id == user_id)
            .values(
                recipient="",
                body="",
                status=case((pending, "failed"), else_=Notification.status),
                last_error=case((pending, CONTACT_ERASED), else_=Notification.last_error),
            )
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0))

    async def lease_due(self, now: datetime, limit: int, until: datetime) -> list[Notification]:
        """`Notification.lease(until)` up to `limit` pending notifications due by `now`, soonest first.

        One statement: the rows other senders hold are skipped (`FOR UPDATE SKIP LOCKED`), the
        chosen ones get their lease and come back as they now are.
        """
        due = (
            select(Notification.id)
            .where(_PENDING, Notification.next_attempt_at <= now)
            .order_by(Notification.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        leased = await self.session.scalars(
            update(Notification)
            .where(Notification.id.in_(due.scalar_subquery()))
            .values(next_attempt_at=until)
            .returning(Notification)
            .execution_options(populate_existing=True, synchronize_session=False)
        )
        # RETURNING follows no order: send the longest waiting first, as they were chosen.
        return sorted(leased.all(), key=lambda notification: (notification.created_at, notification.id))

    async def lock_all(self, ids: Sequence[NotificationId]) -> Sequence[Notification]:
        """The notifications `ids` as stored now, locked until the transaction ends (in id order: no deadlock)."""
        if not ids:
            return []
        return (
            await self.session.scalars(
                select(Notification)
                .where(Notification.id.in_(ids))
                .order_by(Notification.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()

    async def wake_senders(self) -> None:
        """NOTIFY the senders at commit, as an insert does: released rows are claimed again at once."""
        await self.session.execute(select(func.pg_notify(PENDING_CHANNEL, "")))

    async def page_for_user(self, user_id: UserId, *, limit: int, offset: int) -> tuple[Sequence[Notification], int]:
        """One page of `user_id`'s notifications, newest first, and how many there are in all."""
        items = (
            await self.session.scalars(
                select(Notification)
                .where(Notification.user_id == user_id)
                .order_by(Notification.created_at.desc(), Notification.id.desc())
                .limit(limit)
                .offset(offset)
            )
        ).all()
        if offset == 0 and len(items) < limit:
            return items, len(items)  # the whole list is in hand: no count needed
        total = await self.session.scalar(
            select(func.count()).select_from(Notification).where(Notification.user_id == user_id)
        )
        return items, total or 0


class SenderLedger:
    """What the sender writes after each mail, and reads between rounds: one statement each.

    Each is atomic on its own, so it runs on asyncpg's own connection outside a unit of work
    (`fastmicro.db.driver_connection`): one round trip, where a unit of work would add BEGIN and
    COMMIT to every mail.
    """

    # `Notification.mark_sent`, only while the row holds the lease ending $2.
    _RECORD_SENT = (
        "UPDATE notifications SET status = 'sent', sent_at = $3, attempts = attempts + 1"
        " WHERE id = $1 AND status = 'pending' AND next_attempt_at = $2 RETURNING id"
    )
    _NEXT_DUE = "SELECT min(next_attempt_at) FROM notifications WHERE status = 'pending'"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record_sent(self, notification_id: NotificationId, lease_until: datetime, at: datetime) -> bool:
        """Mark it sent at `at`; False when it no longer holds the lease (settled meanwhile, or taken
        over by another sender once the lease ran out): nothing is written then."""
        async with driver_connection(self._engine) as connection:
            return await connection.fetchval(self._RECORD_SENT, notification_id, lease_until, at) is not None

    async def next_due(self) -> datetime | None:
        """When the soonest pending notification is due (None when nothing is pending)."""
        async with driver_connection(self._engine) as connection:
            due: datetime | None = await connection.fetchval(self._NEXT_DUE)
            return due
