from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select

from fastmicro.fields import is_storable
from fastmicro.repository import SQLAlchemyRepository
from users.models import User, UserId, normalize_email

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession


class UserRepository(SQLAlchemyRepository[User, UserId]):
    def __init__(self, session: AsyncSession) -> None:
        super().__init__(session, User)

    async def get_by_email(self, email: str) -> User | None:
        if not is_storable(email):  # no stored email contains it, and PostgreSQL would refuse the query
            return None
        return await self.session.scalar(select(User).where(User.email == normalize_email(email)))
