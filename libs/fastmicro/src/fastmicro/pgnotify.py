"""PostgreSQL LISTEN that survives the database going away: wakes a background role on NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib

import asyncpg
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.backoff import Backoff

log = structlog.get_logger(__name__)

_CHECK_INTERVAL = 10.0


def asyncpg_dsn(engine: AsyncEngine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


async def listen(engine: AsyncEngine, channel: str, wake: asyncio.Event, *, max_backoff: float = 10.0) -> None:
    """Set `wake` on every NOTIFY on `channel`, and once after each (re)connect, until cancelled.

    The set after a reconnect covers anything notified while nobody was listening.
    """
    backoff = Backoff("listen_connect_failed", cap=max_backoff, logger=log)
    while True:
        try:
            connection = await asyncpg.connect(asyncpg_dsn(engine), timeout=3)
        except (OSError, TimeoutError, asyncpg.PostgresError) as error:
            await asyncio.sleep(backoff.failed(error, channel=channel))
            continue
        backoff.succeeded()
        try:
            await _hold(connection, channel, wake)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as error:
            log.warning("listen_lost", channel=channel, error=str(error))
        finally:
            with contextlib.suppress(Exception):
                await connection.close(timeout=1)


async def _hold(connection: asyncpg.Connection, channel: str, wake: asyncio.Event) -> None:
    lost = asyncio.Event()
    connection.add_termination_listener(lambda _: lost.set())
    await connection.add_listener(channel, lambda *_: wake.set())
    wake.set()
    while not lost.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(lost.wait(), _CHECK_INTERVAL)
        if not lost.is_set():  # a half-open connection never reports its own loss
            await connection.fetchval("SELECT 1", timeout=3)
    log.warning("listen_lost", channel=channel)
