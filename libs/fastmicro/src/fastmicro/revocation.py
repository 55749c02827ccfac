"""Subjects whose tokens no longer count: deleted users, learnt from UserDeleted.

An access token is verified without asking users, so a service learns that its subject is gone
from the event: its UserDeleted handler calls `revoke_subject` in the handler's transaction. The
API process keeps the recent revocations in memory (`RevocationList`, reloaded every
REVOCATION_POLL_SECONDS), so checking a request costs a set lookup, not a query. Only the last
token lifetime matters (no token issued before a deletion outlives it, and none is issued after),
so rows older than that are ignored and pruned: the set stays as small as a lifetime's deletions.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from uuid import UUID

import structlog
from sqlalchemy import DateTime, delete
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro.db import Base, driver_connection, utcnow
from fastmicro.errors import ServiceUnavailable
from fastmicro.tokens import MAX_ACCESS_TOKEN_SECONDS

log = structlog.get_logger(__name__)

# A token is refused while its subject was revoked within this long past the token lifetime:
# the margin covers the clocks of users and this service disagreeing.
CLOCK_MARGIN = timedelta(minutes=5)
_PRUNE_AFTER = timedelta(seconds=MAX_ACCESS_TOKEN_SECONDS) + CLOCK_MARGIN


class RevokedSubject(Base):
    __tablename__ = "revoked_subjects"

    user_id: Mapped[UUID] = mapped_column(primary_key=True)
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


revoked_subjects_table = RevokedSubject.metadata.tables["revoked_subjects"]


def create_revocations(bind: Connection) -> None:
    """For a service's Alembic migration: `create_revocations(op.get_bind())`."""
    revoked_subjects_table.create(bind)


def drop_revocations(bind: Connection) -> None:
    revoked_subjects_table.drop(bind)


async def revoke_subject(session: AsyncSession, user_id: UUID) -> None:
    """In the caller's transaction: `user_id`'s tokens stop counting; rows past any token's life go."""
    now = utcnow()
    statement = insert(revoked_subjects_table).values(user_id=user_id, revoked_at=now)
    await session.execute(statement.on_conflict_do_update(index_elements=["user_id"], set_={"revoked_at": now}))
    await session.execute(
        delete(revoked_subjects_table).where(revoked_subjects_table.c.revoked_at < now - _PRUNE_AFTER)
    )


_RECENT = "SELECT user_id FROM revoked_subjects WHERE revoked_at >= $1"


class RevocationList:
    """The recently revoked subjects, reloaded every `interval` seconds for as long as `run()` runs.

    Until the first load succeeds nobody can be told apart from a revoked subject, so
    `is_revoked` answers 503 rather than let a revoked token through.
    """

    def __init__(self, engine: AsyncEngine, *, token_ttl: timedelta, interval: float) -> None:
        self._engine = engine
        self._keep = token_ttl + CLOCK_MARGIN
        self._interval = interval
        self._revoked: frozenset[UUID] | None = None
        self._stopping = asyncio.Event()

    def is_revoked(self, user_id: UUID) -> bool:
        if self._revoked is None:
            raise ServiceUnavailable("Token revocations are not loaded yet")
        return user_id in self._revoked

    async def refresh(self) -> None:
        async with driver_connection(self._engine) as connection:
            rows = await connection.fetch(_RECENT, utcnow() - self._keep)
        self._revoked = frozenset(row["user_id"] for row in rows)

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.refresh()
            except Exception as error:  # noqa: BLE001 - keep the last list; the next round tries again
                log.warning("revocations_not_refreshed", error_type=type(error).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)

    def stop(self) -> None:
        self._stopping.set()
