"""What every service answers besides its API, and its migrations in both directions."""

from __future__ import annotations

import asyncio

import asyncpg
import httpx
from alembic import command

from fastmicro.migrations import alembic_config, upgrade_to_head
from fastmicro.testing.plugin import DatabaseFactory


async def test_the_service_is_live_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health/live")).json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200
    body = ready.json()
    assert {key: body[key] for key in ("status", "checks")} == {
        "status": "ok",
        "checks": {"database": "ok", "broker": "ok"},
    }
    # orders has an outbox: readiness shows how far its relay is behind (the figures vary with other tests).
    assert set(body["details"]) == {"outbox_lag_seconds", "outbox_pending"}
    assert body["details"]["outbox_lag_seconds"] >= 0
    assert body["details"]["outbox_pending"] >= 0


async def test_the_migrations_downgrade_to_nothing_and_upgrade_again(database_factory: DatabaseFactory) -> None:
    url = await database_factory("orders_migrations")
    libpq_url = url.replace("postgresql+asyncpg://", "postgresql://")

    async def objects() -> set[str]:
        conn = await asyncpg.connect(libpq_url)
        try:
            rows = await conn.fetch(
                "SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'"
                " UNION ALL SELECT proname FROM pg_proc WHERE pronamespace = 'public'::regnamespace"
            )
        finally:
            await conn.close()
        return {row["name"] for row in rows}

    await upgrade_to_head("orders:migrations", url)
    assert await objects() == {
        "alembic_version",
        "orders",
        "order_items",
        "deleted_users",
        "outbox",
        "inbox",
        "revoked_subjects",
        "lock_user_for_placing",
        "fastmicro_outbox_notify",
        "idempotency_keys",
        "idempotency_claim",
    }
    await asyncio.to_thread(command.downgrade, alembic_config("orders:migrations", url), "base")
    assert await objects() == {"alembic_version"}
    await upgrade_to_head("orders:migrations", url)
    assert "lock_user_for_placing" in await objects()
