"""Alembic glue: each service's `env.py` is three lines, and `python -m <svc> migrate` needs no ini file."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Callable

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: str, database_url: str) -> Config:
    """`script_location` is a package resource (`users:migrations`), so it works installed too."""
    config = Config()
    config.set_main_option("script_location", script_location)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


async def upgrade_to_head(script_location: str, database_url: str) -> None:
    # env.py drives its own event loop, so it runs in a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(script_location, database_url), "head")


def run_env(target_metadata: MetaData, default_url: Callable[[], str]) -> None:
    """The body of a service's `migrations/env.py`."""
    url = context.config.get_main_option("sqlalchemy.url") or default_url()
    if context.is_offline_mode():
        context.configure(url=url, target_metadata=target_metadata, literal_binds=True, compare_type=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, target_metadata))


def run_service_env(package: str) -> None:
    """The whole of a service's `migrations/env.py`: its tables (`<package>.models`) on `fastmicro.db.Base`,
    and its DATABASE_URL from its settings (`<package>.main.service`) when alembic is given none."""
    from fastmicro.db import Base  # noqa: PLC0415 - the models register on it as they are imported

    importlib.import_module(f"{package}.models")
    service = importlib.import_module(f"{package}.main").service
    run_env(Base.metadata, default_url=lambda: str(service.settings().database_url))


async def _run_online(url: str, target_metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_migrate, target_metadata)
    finally:
        await engine.dispose()


def _migrate(connection: Connection, target_metadata: MetaData) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()
