"""The migrations build what the models describe, and take it all away again."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import create_async_engine

import users.models
import users.sessions
import users.throttle  # noqa: F401 - the tables under test
from fastmicro.migrations import alembic_config
from fastmicro.testing import migrated_database
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.testing.schema import model_differences

TABLES = {"users", "refresh_tokens", "login_failures", "idempotency_keys"}


async def test_the_migrations_match_the_models_and_downgrade_cleanly(database_factory: DatabaseFactory) -> None:
    url = await migrated_database(database_factory, "users_migrations", "users:migrations")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(model_differences, TABLES) == []

        await asyncio.to_thread(command.downgrade, alembic_config("users:migrations", url), "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(lambda sync: set(inspect(sync).get_table_names())) == {"alembic_version"}

        await asyncio.to_thread(command.upgrade, alembic_config("users:migrations", url), "head")
        async with engine.connect() as conn:
            assert await conn.run_sync(lambda sync: set(inspect(sync).get_table_names())) >= TABLES | {"outbox"}
    finally:
        await engine.dispose()
