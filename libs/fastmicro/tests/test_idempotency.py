"""A unit of work under an Idempotency-Key, on real PostgreSQL: the answer is stored with the work, or not at all."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import BaseModel, ConfigDict
from sqlalchemy import String, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastmicro.db import UUIDPrimaryKey, create_session_factory
from fastmicro.errors import ConflictError
from fastmicro.idempotency import (
    IdempotencyKeyReused,
    IdempotentRequest,
    Replayed,
    RequestInProgress,
    create_idempotency_keys,
    idempotency_table,
)
from fastmicro.retention import RetentionPurger
from fastmicro.testing.locks import wait_for_an_advisory_lock_waiter
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.uow import UnitOfWork

TTL = timedelta(hours=24)


class KeyTestBase(DeclarativeBase):
    pass


class Gadget(UUIDPrimaryKey, KeyTestBase):
    __tablename__ = "gadgets"

    name: Mapped[str] = mapped_column(String(50))


class GadgetOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str


class GadgetGone(ConflictError):
    code = "gadget_gone"


@pytest.fixture
async def engine(database_factory: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await database_factory("idempotency"))
    async with engine.begin() as conn:
        await conn.run_sync(KeyTestBase.metadata.create_all)
        await conn.run_sync(create_idempotency_keys)
    yield engine
    await engine.dispose()


def request(key: str = "k-1", body: bytes = b"one", *, wait: float = 2.0, scope: str = "alice") -> IdempotentRequest:
    return IdempotentRequest(
        scope=scope,
        key=key,
        fingerprint=hashlib.sha256(body).digest(),
        wait_seconds=wait,
        ttl_seconds=TTL.total_seconds(),
        success_status=201,
        render=GadgetOut.model_validate,
    )


async def make(engine: AsyncEngine, key: IdempotentRequest | None, name: str = "widget") -> Gadget:
    """The use case: one row, committed with its answer."""
    async with UnitOfWork(create_session_factory(engine)).once(key) as uow:
        gadget = Gadget(name=name)
        uow.session.add(gadget)
        await uow.commit(answer=gadget)
    return gadget


async def gadgets(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return len((await conn.scalars(select(Gadget.id))).all())


async def keys(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(idempotency_table.c.key, idempotency_table.c.status_code))
        return [(row.key, row.status_code) for row in rows]


async def test_a_retry_gets_the_stored_answer_and_the_work_is_not_done_again(engine: AsyncEngine) -> None:
    gadget = await make(engine, request())
    with pytest.raises(Replayed) as replayed:
        await make(engine, request(), name="second")
    answer = replayed.value.answer
    assert answer.status_code == 201
    assert GadgetOut.model_validate_json(answer.body) == GadgetOut(id=gadget.id, name="widget")
    assert answer.headers == {"content-type": "application/json"}
    assert await gadgets(engine) == 1


async def test_another_request_under_a_used_key_is_refused(engine: AsyncEngine) -> None:
    await make(engine, request())
    with pytest.raises(IdempotencyKeyReused):
        await make(engine, request(body=b"two"))
    assert await gadgets(engine) == 1


async def test_keys_are_per_scope(engine: AsyncEngine) -> None:
    await make(engine, request(scope="alice"))
    await make(engine, request(scope="bob"))
    assert await gadgets(engine) == 2


async def test_a_server_error_leaves_the_key_unused_and_the_retry_does_the_work(engine: AsyncEngine) -> None:
    """A 5xx (here a fault after the row was written) rolls back the work and stores no answer."""
    with pytest.raises(RuntimeError):
        async with UnitOfWork(create_session_factory(engine)).once(request()) as uow:
            uow.session.add(Gadget(name="lost"))
            await uow.session.flush()
            raise RuntimeError("boom")
    assert (await gadgets(engine), await keys(engine)) == (0, [])
    await make(engine, request())
    assert (await gadgets(engine), await keys(engine)) == (1, [("k-1", 201)])


async def test_a_client_error_is_stored_and_replayed(engine: AsyncEngine) -> None:
    with pytest.raises(GadgetGone):
        async with UnitOfWork(create_session_factory(engine)).once(request()):
            raise GadgetGone("No more gadgets")
    with pytest.raises(Replayed) as replayed:
        await make(engine, request())
    assert replayed.value.answer.status_code == 409
    assert replayed.value.answer.headers["content-type"] == "application/problem+json"
    assert b'"code":"gadget_gone"' in replayed.value.answer.body
    assert await gadgets(engine) == 0


async def test_a_retry_waits_for_the_first_then_replays_it(engine: AsyncEngine) -> None:
    """While the first holds the key the retry waits; it answers what the first committed."""
    first = UnitOfWork(create_session_factory(engine)).once(request())
    async with first as uow:
        gadget = Gadget(name="first")
        uow.session.add(gadget)
        retry = asyncio.create_task(make(engine, request(), name="retry"))
        await wait_for_an_advisory_lock_waiter(engine)
        await uow.commit(answer=gadget)
    with pytest.raises(Replayed) as replayed:
        await retry
    assert GadgetOut.model_validate_json(replayed.value.answer.body).id == gadget.id
    assert await gadgets(engine) == 1


async def test_a_retry_that_waits_past_the_bound_is_told_the_request_is_in_progress(engine: AsyncEngine) -> None:
    async with UnitOfWork(create_session_factory(engine)).once(request()) as uow:
        with pytest.raises(RequestInProgress) as in_progress:
            await make(engine, request(wait=0.2))
        await uow.commit(answer=Gadget(id=uuid.uuid4(), name="slow"))
    assert in_progress.value.headers() == {"Retry-After": "1"}
    assert await keys(engine) == [("k-1", 201)]


async def test_an_expired_key_is_free_again_and_purged(engine: AsyncEngine) -> None:
    await make(engine, request())
    async with engine.begin() as conn:
        await conn.execute(update(idempotency_table).values(created_at=idempotency_table.c.created_at - TTL))
    await make(engine, request(body=b"another request"))  # expired: not a reuse, and its row replaced
    assert await gadgets(engine) == 2
    await make(engine, request(key="k-2"))
    async with engine.begin() as conn:
        await conn.execute(
            update(idempotency_table)
            .where(idempotency_table.c.key == "k-2")
            .values(created_at=idempotency_table.c.created_at - TTL - timedelta(seconds=1))
        )
    purged = await RetentionPurger(engine, idempotency_retention=TTL).purge()
    assert purged == {"idempotency_keys": 1}
    assert await keys(engine) == [("k-1", 201)]
