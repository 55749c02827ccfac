"""The migrations build what the models describe, and take it all away again."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect
from sqlalchemy.ext.asyncio import create_async_engine

import users.models
import users.sessions
import users.throttle  # noqa: F401 - the tables under test
from fastmicro.db import Base
from fastmicro.migrations import alembic_config
from fastmicro.testing import migrated_database
from fastmicro.testing.plugin import DatabaseFactory

TABLES = {"users", "refresh_tokens", "login_failures"}


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Only this service's own tables: the kernel's metadata also holds the inbox, which users has not."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in TABLES


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _ours})
    differences: list[Any] = list(compare_metadata(context, Base.metadata))
    return differences


async def test_the_migrations_match_the_models_and_downgrade_cleanly(database_factory: DatabaseFactory) -> None:
    url = await migrated_database(database_factory, "users_migrations", "users:migrations")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []

        await asyncio.to_thread(command.downgrade, alembic_config("users:migrations", url), "base")
        async with engine.connect() as conn:
            assert await conn.run_sync(lambda sync: set(inspect(sync).get_table_names())) == {"alembic_version"}

        await asyncio.to_thread(command.upgrade, alembic_config("users:migrations", url), "head")
        async with engine.connect() as conn:
            assert await conn.run_sync(lambda sync: set(inspect(sync).get_table_names())) >= TABLES | {"outbox"}
    finally:
        await engine.dispose()
