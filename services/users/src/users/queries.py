"""The hot reads, served straight from the table: no ORM, no session, no transaction (see orders.queries)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastmicro.db import driver_connection
from users.models import UserId
from users.schemas import UserOut

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

_PROFILE = "SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1"


class UserQueries:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def profile(self, user_id: UserId) -> UserOut | None:
        """The user as the API shows them; None once the account is gone."""
        async with driver_connection(self._engine) as connection:
            row = await connection.fetchrow(_PROFILE, user_id)
        return None if row is None else UserOut.model_validate(dict(row))
