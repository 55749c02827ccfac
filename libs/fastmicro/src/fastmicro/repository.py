"""Repositories: `SQLAlchemyRepository`, a collection-like view of one entity type that a service
repository extends with its own queries; and the helpers of the hot writes' Core statements.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, cast

from sqlalchemy import Table, exists, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase

ModelT = TypeVar("ModelT", bound=DeclarativeBase)
KeyT = TypeVar("KeyT")


class SQLAlchemyRepository(Generic[ModelT, KeyT]):
    """Works inside the caller's transaction: it flushes, it never commits."""

    def __init__(self, session: AsyncSession, model: type[ModelT]) -> None:
        self.session = session
        self.model = model
        self._pk = model.__mapper__.primary_key[0]

    async def get(self, id_: KeyT, /, *, for_update: bool = False) -> ModelT | None:
        """The entity, or None; `for_update` locks its row until the transaction ends."""
        return await self.session.get(self.model, id_, with_for_update=for_update or None)

    async def get_all(self, *, skip: int = 0, limit: int = 100) -> Sequence[ModelT]:
        stmt = select(self.model).order_by(self._pk).offset(skip).limit(limit)
        return (await self.session.scalars(stmt)).all()

    async def create(self, entity: ModelT, /) -> ModelT:
        self.session.add(entity)
        await self.session.flush()
        return entity

    async def update(self, entity: ModelT, /) -> ModelT:
        if entity not in self.session:  # detached: copy its state onto the persistent one
            entity = await self.session.merge(entity)
        await self.session.flush()
        return entity

    async def delete(self, id_: KeyT, /) -> bool:
        entity = await self.get(id_)
        if entity is None:
            return False
        await self.session.delete(entity)
        await self.session.flush()
        return True

    async def exists(self, id_: KeyT, /) -> bool:
        stmt = select(exists().where(self._pk == id_))
        return bool(await self.session.scalar(stmt))


def table_of(model: type[DeclarativeBase]) -> Table:
    """The table an entity class is mapped to, for Core statements built once on it."""
    return cast("Table", model.__table__)


def column_values(entity: DeclarativeBase) -> dict[str, Any]:
    """Every mapped column of `entity` with its value: the parameters of a Core INSERT of it.

    For the hot writes, where a statement built once beats the unit-of-work flush; the entity
    still makes every value.
    """
    return {key: getattr(entity, key) for key in _column_keys(type(entity))}


@functools.cache
def _column_keys(model: type[DeclarativeBase]) -> tuple[str, ...]:
    return tuple(column.key for column in model.__mapper__.column_attrs)
