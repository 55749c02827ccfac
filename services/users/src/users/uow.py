from __future__ import annotations

from typing import Self

from fastmicro.uow import UnitOfWork
from users.repository import UserRepository


class UsersUnitOfWork(UnitOfWork):
    users: UserRepository

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.users = UserRepository(self.session)
        return self
