"""SQLAlchemyRepository against real PostgreSQL: a collection that flushes and never commits."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import MetaData, String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastmicro.db import NAMING_CONVENTION, Timestamps, UUIDPrimaryKey, create_session_factory
from fastmicro.repository import SQLAlchemyRepository
from fastmicro.testing.plugin import DatabaseFactory

Sessions = async_sessionmaker[AsyncSession]


class RepositoryTestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Gadget(UUIDPrimaryKey, Timestamps, RepositoryTestBase):
    __tablename__ = "gadgets"

    name: Mapped[str] = mapped_column(String(50))


@pytest.fixture
async def sessions(database_factory: DatabaseFactory) -> AsyncIterator[Sessions]:
    engine = create_async_engine(await database_factory("repository"))
    async with engine.begin() as conn:
        await conn.run_sync(RepositoryTestBase.metadata.create_all)
    yield create_session_factory(engine)
    await engine.dispose()


def gadgets(session: AsyncSession) -> SQLAlchemyRepository[Gadget, uuid.UUID]:
    return SQLAlchemyRepository(session, Gadget)


async def add(sessions: Sessions, *names: str) -> list[Gadget]:
    async with sessions() as session:
        created = [await gadgets(session).create(Gadget(name=name)) for name in names]
        await session.commit()
    return created


async def test_create_then_get_in_another_session(sessions: Sessions) -> None:
    [bolt] = await add(sessions, "bolt")

    async with sessions() as session:
        found = await gadgets(session).get(bolt.id)

    assert found is not None
    assert (found.id, found.name, found.created_at) == (bolt.id, "bolt", bolt.created_at)


async def test_get_of_an_unknown_id_is_none(sessions: Sessions) -> None:
    async with sessions() as session:
        assert await gadgets(session).get(uuid.uuid4()) is None


async def test_create_flushes_but_never_commits(sessions: Sessions) -> None:
    async with sessions() as session:
        bolt = await gadgets(session).create(Gadget(name="bolt"))
        assert await gadgets(session).exists(bolt.id)  # flushed: visible to its own transaction
    async with sessions() as session:
        assert not await gadgets(session).exists(bolt.id)


async def test_get_all_pages_in_id_order(sessions: Sessions) -> None:
    created = await add(sessions, "a", "b", "c", "d", "e")
    ids = sorted(gadget.id for gadget in created)

    async with sessions() as session:
        everything = await gadgets(session).get_all()
        page = await gadgets(session).get_all(skip=1, limit=2)
        beyond = await gadgets(session).get_all(skip=5)

    assert [gadget.id for gadget in everything] == ids
    assert [gadget.id for gadget in page] == ids[1:3]
    assert beyond == []


async def test_update_of_a_loaded_entity(sessions: Sessions) -> None:
    [bolt] = await add(sessions, "bolt")

    async with sessions() as session:
        loaded = await gadgets(session).get(bolt.id)
        assert loaded is not None
        loaded.name = "big bolt"
        updated = await gadgets(session).update(loaded)
        await session.commit()

    async with sessions() as session:
        stored = await gadgets(session).get(bolt.id)
    assert stored is not None
    assert stored.name == updated.name == "big bolt"
    assert stored.updated_at > bolt.updated_at
    assert stored.created_at == bolt.created_at


async def test_update_of_a_detached_entity_merges_it(sessions: Sessions) -> None:
    [bolt] = await add(sessions, "bolt")  # its session is closed: bolt is detached
    bolt.name = "renamed while detached"

    async with sessions() as session:
        updated = await gadgets(session).update(bolt)
        await session.commit()
        assert updated in session

    async with sessions() as session:
        stored = await gadgets(session).get(bolt.id)
    assert stored is not None
    assert stored.name == "renamed while detached"


async def test_delete(sessions: Sessions) -> None:
    [bolt, nut] = await add(sessions, "bolt", "nut")

    async with sessions() as session:
        assert await gadgets(session).delete(bolt.id) is True
        assert await gadgets(session).delete(uuid.uuid4()) is False
        await session.commit()

    async with sessions() as session:
        assert await gadgets(session).get(bolt.id) is None
        assert await gadgets(session).get(nut.id) is not None


async def test_exists(sessions: Sessions) -> None:
    [bolt] = await add(sessions, "bolt")

    async with sessions() as session:
        assert await gadgets(session).exists(bolt.id) is True
        assert await gadgets(session).exists(uuid.uuid4()) is False
