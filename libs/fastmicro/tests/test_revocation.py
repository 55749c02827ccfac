"""Revoked subjects: recorded in a handler's transaction, refused by the API after its next reload."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from fastapi import APIRouter
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, create_async_engine

from fastmicro.errors import ServiceUnavailable
from fastmicro.revocation import (
    RevocationList,
    create_revocations,
    revoke_subject,
    revoked_subjects_table,
)
from fastmicro.security import CurrentUser
from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.testing.tokens import signer_for
from fastmicro.tokens import MAX_ACCESS_TOKEN_SECONDS
from fastmicro.web import create_app

TTL = timedelta(minutes=15)


@pytest.fixture
async def engine(database_factory: DatabaseFactory) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(await database_factory("revocation"))
    async with engine.begin() as conn:
        await conn.run_sync(create_revocations)
    yield engine
    await engine.dispose()


async def revoke(engine: AsyncEngine, user_id: uuid.UUID) -> None:
    async with AsyncSession(engine) as session, session.begin():
        await revoke_subject(session, user_id)


async def test_a_revoked_subject_is_refused_after_the_next_reload(engine: AsyncEngine) -> None:
    revocations = RevocationList(engine, token_ttl=TTL, interval=1.0)
    gone, kept = uuid.uuid4(), uuid.uuid4()
    await revocations.refresh()
    await revoke(engine, gone)

    assert not revocations.is_revoked(gone)  # not reloaded yet
    await revocations.refresh()
    assert revocations.is_revoked(gone)
    assert not revocations.is_revoked(kept)


async def test_nothing_passes_before_the_first_load(engine: AsyncEngine) -> None:
    revocations = RevocationList(engine, token_ttl=TTL, interval=1.0)

    with pytest.raises(ServiceUnavailable):
        revocations.is_revoked(uuid.uuid4())


async def test_revocations_older_than_any_token_are_ignored_and_pruned(engine: AsyncEngine) -> None:
    old, recent = uuid.uuid4(), uuid.uuid4()
    await revoke(engine, old)
    table = revoked_subjects_table
    async with engine.begin() as conn:
        long_ago = func.now() - timedelta(seconds=MAX_ACCESS_TOKEN_SECONDS, minutes=6)
        await conn.execute(update(table).where(table.c.user_id == old).values(revoked_at=long_ago))
    revocations = RevocationList(engine, token_ttl=TTL, interval=1.0)
    await revocations.refresh()
    assert not revocations.is_revoked(old)  # its tokens expired long ago

    await revoke(engine, recent)  # each revocation prunes what no token can outlive

    async with engine.connect() as conn:
        assert set(await conn.scalars(select(table.c.user_id))) == {recent}


async def test_revoking_twice_is_one_row(engine: AsyncEngine) -> None:
    user_id = uuid.uuid4()
    await revoke(engine, user_id)
    await revoke(engine, user_id)

    async with engine.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(revoked_subjects_table)) == 1


router = APIRouter()


@router.get("/me")
async def me(user: CurrentUser) -> dict[str, str]:
    return {"user_id": str(user.user_id)}


async def test_the_app_refuses_a_revoked_subjects_token_with_401(engine: AsyncEngine, amqp_namespace: str) -> None:
    settings = ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=engine.url.render_as_string(hide_password=False),
        amqp_namespace=amqp_namespace,
        _env_file=None,
    )
    app = create_app(settings, title="revocation", routers=[router], roles=lambda _runtime: (), revocations=True)
    gone, kept = uuid.uuid4(), uuid.uuid4()
    signer = signer_for(settings)
    await revoke(engine, gone)

    async with app_client(app) as client:  # the list is loaded before the first request is served
        for user_id, status in ((gone, 401), (kept, 200)):
            token = signer.issue(user_id).access_token
            response = await client.get("/me", headers={"Authorization": f"Bearer {token}"})
            assert response.status_code == status, response.text
        assert response.json() == {"user_id": str(kept)}
