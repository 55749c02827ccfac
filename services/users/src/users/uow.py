from __future__ import annotations

from typing import TYPE_CHECKING, Self

from fastmicro.uow import OutboxUnitOfWork
from users.queries import UserQueries
from users.repository import LoginFailureRepository, RefreshTokenRepository, UserRepository

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker


class UsersUnitOfWork(OutboxUnitOfWork):
    """The users' repository in one transaction; `queries` reads outside any (no `async with` needed)."""

    users: UserRepository
    sessions: RefreshTokenRepository

    def __init__(self, session_factory: async_sessionmaker[AsyncSession]) -> None:
        super().__init__(session_factory)
        self.queries = UserQueries(self.engine)
        self.login_failures = LoginFailureRepository(self.engine)  # each statement its own transaction

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.users = UserRepository(self.session)
        self.sessions = RefreshTokenRepository(self.session)
        return self
