"""The migration builds what the models describe (plus the trigger), and takes it all away again."""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

import notifications.models  # noqa: F401 - the tables under test
from fastmicro.db import Base
from fastmicro.migrations import alembic_config
from fastmicro.testing import migrated_database
from fastmicro.testing.plugin import DatabaseFactory

TABLES = {"contacts", "notifications", "inbox", "revoked_subjects"}


def _ours(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Only this service's tables: the kernel's metadata also holds the outbox, which it does not have."""
    table = obj if type_ == "table" else getattr(obj, "table", None)
    return table is None or table.name in TABLES


def _differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": True, "include_object": _ours})
    differences: list[Any] = list(compare_metadata(context, Base.metadata))
    return differences


async def test_the_migration_matches_the_models_and_downgrades_cleanly(database_factory: DatabaseFactory) -> None:
    url = await migrated_database(database_factory, "notifications_migrations", "notifications:migrations")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(_differences) == []
            indexes = await conn.run_sync(lambda sync: {i["name"] for i in inspect(sync).get_indexes("notifications")})
            assert {"ix_notifications_due", "ix_notifications_user_recent"} <= indexes
            trigger = await conn.scalar(
                text("SELECT count(*) FROM pg_trigger WHERE tgname = 'notifications_pending_notify'")
            )
            assert trigger == 1

        await asyncio.to_thread(command.downgrade, alembic_config("notifications:migrations", url), "base")
        async with engine.connect() as conn:
            left = await conn.run_sync(lambda sync: set(inspect(sync).get_table_names()))
            assert left == {"alembic_version"}
            functions = await conn.scalar(
                text("SELECT count(*) FROM pg_proc WHERE proname = 'notifications_pending_notify'")
            )
            assert functions == 0

        await asyncio.to_thread(command.upgrade, alembic_config("notifications:migrations", url), "head")
        async with engine.connect() as conn:
            assert await conn.run_sync(lambda sync: set(inspect(sync).get_table_names())) >= TABLES
    finally:
        await engine.dispose()
