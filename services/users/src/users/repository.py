from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update

from fastmicro.db import driver_connection
from fastmicro.fields import is_storable
from fastmicro.repository import SQLAlchemyRepository
from users.models import User, UserId, normalize_email
from users.sessions import RefreshToken

if TYPE_CHECKING:
    from datetime import datetime, timedelta
    from uuid import UUID

    from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

    from users.throttle import ThrottleKeys


class UserRepository(SQLAlchemyRepository[User, UserId]):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session, User)

    async def get_by_email(self, email: str) -> User | None:
        if not is_storable(email):  # no stored email contains it, and PostgreSQL would refuse the query
            return None
        return await self.session.scalar(select(User).where(User.email == normalize_email(email)))


class RefreshTokenRepository:
    """The sessions' refresh tokens, in the unit of work's transaction."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def add(self, token: RefreshToken) -> None:
        self.session.add(token)

    async def by_digest(self, digest: bytes) -> RefreshToken | None:
        """The token with this hash, locked: of two uses of one token, the second sees the first's rotation."""
        statement = select(RefreshToken).where(RefreshToken.token_hash == digest).with_for_update()
        return await self.session.scalar(statement)

    async def revoke_family(self, family_id: UUID, now: datetime) -> None:
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.family_id == family_id, RefreshToken.retired_at.is_(None))
            .values(retired_at=now)
        )

    async def revoke_user(self, user_id: UUID, now: datetime) -> None:
        """Every session of the user: a changed password ends them all."""
        await self.session.execute(
            update(RefreshToken)
            .where(RefreshToken.user_id == user_id, RefreshToken.retired_at.is_(None))
            .values(retired_at=now)
        )

    async def purge_expired(self, user_id: UUID, now: datetime) -> None:
        """A user's expired tokens: past expiry a reuse is refused as expired, so the rows prove nothing more."""
        await self.session.execute(
            delete(RefreshToken).where(RefreshToken.user_id == user_id, RefreshToken.expires_at <= now)
        )


@dataclass(frozen=True, slots=True)
class Standing:
    """Where a login attempt stands: until when its keys are blocked, and what it recorded provisionally."""

    blocked_until: datetime | None
    recorded: list[int]


# One round trip, one snapshot: the n-th newest failure of each key within the window (n its
# limit: the key is blocked until that failure leaves the window), and, unless blocked, this
# attempt recorded as a failure up front (taken back on success), so that concurrent attempts
# count against each other. Rows past the window go on the way. Every delete skips the rows another
# statement has locked (it is deleting them too): concurrent attempts never wait on, or deadlock
# with, each other.
_STANDING = """
WITH nth AS (
    SELECT max((SELECT failed_at FROM login_failures WHERE key = k.key AND failed_at > $4
                ORDER BY failed_at DESC OFFSET k.lim - 1 LIMIT 1)) AS blocked_since
    FROM unnest($1::bytea[], $2::int[]) AS k(key, lim)
), purged AS (
    DELETE FROM login_failures WHERE id IN (
        SELECT id FROM login_failures WHERE failed_at <= $4 FOR UPDATE SKIP LOCKED
    )
), recorded AS (
    INSERT INTO login_failures (key, failed_at)
    SELECT key, $3 FROM unnest($1::bytea[]) AS key, nth WHERE nth.blocked_since IS NULL
    RETURNING id
)
SELECT blocked_since, coalesce((SELECT array_agg(id) FROM recorded), '{}') AS recorded FROM nth
"""
_SUCCEEDED = """
DELETE FROM login_failures WHERE id IN (
    SELECT id FROM login_failures WHERE key = any($1::bytea[]) OR id = any($2::bigint[]) FOR UPDATE SKIP LOCKED
)
"""


class LoginFailureRepository:
    """Failed logins per hashed key (users.throttle), on the driver: each statement commits alone."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def attempt(self, keys: ThrottleKeys, *, now: datetime, window: timedelta) -> Standing:
        async with driver_connection(self._engine) as connection:
            row = await connection.fetchrow(_STANDING, keys.keys, keys.limits, now, now - window)
        assert row is not None  # noqa: S101 - the query always returns its one row
        blocked_since: datetime | None = row["blocked_since"]
        return Standing(
            blocked_until=None if blocked_since is None else blocked_since + window, recorded=list(row["recorded"])
        )

    async def succeeded(self, keys: ThrottleKeys, standing: Standing) -> None:
        """The attempt was right: its provisional rows go, and the account's failures with them."""
        async with driver_connection(self._engine) as connection:
            await connection.execute(_SUCCEEDED, keys.of_the_account, standing.recorded)
