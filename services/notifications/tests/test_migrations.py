"""The migration builds what the models describe (plus the trigger), and takes it all away again."""

from __future__ import annotations

import asyncio

from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.ext.asyncio import create_async_engine

import notifications.models  # noqa: F401 - the tables under test
from fastmicro.migrations import alembic_config
from fastmicro.testing import migrated_database
from fastmicro.testing.plugin import DatabaseFactory
from fastmicro.testing.schema import model_differences

TABLES = {"contacts", "notifications", "inbox", "revoked_subjects"}


async def test_the_migration_matches_the_models_and_downgrades_cleanly(database_factory: DatabaseFactory) -> None:
    url = await migrated_database(database_factory, "notifications_migrations", "notifications:migrations")
    engine = create_async_engine(url)
    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(model_differences, TABLES) == []
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
