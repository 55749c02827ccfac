"""The database the migrations build is the one the models describe; the API documents its problems."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from fastmicro.testing.schema import model_differences

ORDERS_TABLES = {"orders", "order_items", "deleted_users", "outbox", "inbox", "revoked_subjects", "idempotency_keys"}


async def test_the_migrations_build_what_the_models_describe(app: FastAPI, client: httpx.AsyncClient) -> None:
    async with app.state.runtime.engine.connect() as conn:
        assert await conn.run_sync(model_differences, ORDERS_TABLES) == []


async def test_the_constraints_follow_the_naming_convention(app: FastAPI, client: httpx.AsyncClient) -> None:
    async with app.state.runtime.engine.connect() as conn:
        constraints = set(
            (
                await conn.scalars(
                    text(
                        "SELECT conname FROM pg_constraint JOIN pg_class ON pg_class.oid = conrelid"
                        " WHERE relname IN ('orders', 'order_items', 'deleted_users')"
                    )
                )
            ).all()
        )
        indexes = set((await conn.scalars(text("SELECT indexname FROM pg_indexes WHERE tablename = 'orders'"))).all())
    assert constraints == {
        "pk_orders",
        "ck_orders_status",
        "ck_orders_cancel_reason",
        "ck_orders_total_not_negative",
        "pk_order_items",
        "fk_order_items_order_id_orders",
        "uq_order_items_order_id",
        "ck_order_items_quantity_positive",
        "ck_order_items_unit_price_not_negative",
        "ck_order_items_line_total",
        "pk_deleted_users",
    }
    assert indexes == {"pk_orders", "ix_orders_user_id_created_at"}


async def test_every_route_documents_its_problems(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    documented = {
        (method.upper(), path): {code for code in operation["responses"] if code.startswith(("4", "5"))}
        for path, operations in paths.items()
        if path.startswith("/orders")
        for method, operation in operations.items()
    }
    assert documented == {
        ("POST", "/orders"): {"401", "403", "409", "422"},
        ("GET", "/orders"): {"401", "422"},
        ("GET", "/orders/{order_id}"): {"401", "404", "422"},
        ("POST", "/orders/{order_id}/cancel"): {"401", "404", "409", "422"},
    }
    problem = paths["/orders"]["post"]["responses"]["403"]["content"]
    assert "application/problem+json" in problem
