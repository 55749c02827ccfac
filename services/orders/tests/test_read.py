"""GET /orders/{id} (own only) and GET /orders (the caller's, newest first, paginated)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event

from .conftest import NewCustomer
from .helpers import assert_order, assert_order_shape, assert_problem, assert_validation_error, place


async def test_get_answers_the_callers_order(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice = new_customer()
    order = await place(client, alice)
    assert assert_order(await client.get(f"/orders/{order['id']}", headers=alice.auth)) == order


async def test_get_answers_someone_elses_order_as_not_found(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice, mallory = new_customer(), new_customer()
    order = await place(client, alice)
    theirs = assert_problem(await client.get(f"/orders/{order['id']}", headers=mallory.auth), 404, "order_not_found")
    absent = assert_problem(await client.get(f"/orders/{uuid.uuid4()}", headers=mallory.auth), 404, "order_not_found")
    assert theirs == absent  # the answer does not tell which orders exist
    assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).status_code == 200


async def test_get_refuses_an_id_that_is_not_a_uuid(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    response = await client.get("/orders/not-a-uuid", headers=new_customer().auth)
    assert_validation_error(response, ["path", "order_id"])


@pytest.mark.parametrize("path", ["/orders", f"/orders/{uuid.uuid4()}"])
async def test_reads_need_a_token(client: httpx.AsyncClient, path: str) -> None:
    assert_problem(await client.get(path), 401, "not_authenticated")
    assert_problem(await client.get(path, headers={"Authorization": "Bearer not.a.jwt"}), 401, "invalid_token")


async def test_list_answers_the_callers_orders_newest_first(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice, bob = new_customer(), new_customer()
    placed = []
    for n in range(5):
        placed.append(await place(client, alice, [{"sku": f"A-{n}", "quantity": n + 1, "unit_price": 10}]))
        await place(client, bob)
    response = await client.get("/orders", headers=alice.auth)
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"items", "total", "limit", "offset"}
    assert (page["total"], page["limit"], page["offset"]) == (5, 20, 0)
    assert page["items"] == list(reversed(placed))
    for order in page["items"]:
        assert_order_shape(order)


async def test_list_pages_through_the_orders(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    alice = new_customer()
    newest_first = [(await place(client, alice))["id"] for _ in range(5)][::-1]

    async def page(limit: int, offset: int) -> dict[str, Any]:
        response = await client.get("/orders", params={"limit": limit, "offset": offset}, headers=alice.auth)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        assert (body["total"], body["limit"], body["offset"]) == (5, limit, offset)
        return body

    assert [order["id"] for order in (await page(2, 0))["items"]] == newest_first[0:2]
    assert [order["id"] for order in (await page(2, 2))["items"]] == newest_first[2:4]
    assert [order["id"] for order in (await page(2, 4))["items"]] == newest_first[4:5]
    assert (await page(2, 5))["items"] == []
    assert (await page(100, 1_000_000))["items"] == []
    assert [order["id"] for order in (await page(1, 0))["items"]] == newest_first[0:1]
    assert [order["id"] for order in (await page(100, 0))["items"]] == newest_first


async def test_list_of_a_caller_without_orders_is_empty(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    response = await client.get("/orders", params={"offset": 3}, headers=new_customer().auth)
    assert response.json() == {"items": [], "total": 0, "limit": 20, "offset": 3}
    response = await client.get("/orders", headers=new_customer().auth)
    assert response.json() == {"items": [], "total": 0, "limit": 20, "offset": 0}


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 101}, ["query", "limit"]),
        ({"limit": -1}, ["query", "limit"]),
        ({"limit": "ten"}, ["query", "limit"]),
        ({"limit": 1.5}, ["query", "limit"]),
        ({"offset": -1}, ["query", "offset"]),
        ({"offset": "x"}, ["query", "offset"]),
        ({"offset": 2**63}, ["query", "offset"]),
        ({"offset": 10**30}, ["query", "offset"]),
    ],
    ids=["limit-0", "limit-101", "limit-negative", "limit-word", "limit-fraction", "offset-negative", "offset-word",
         "offset-2^63", "offset-huge"],
)  # fmt: skip
async def test_list_refuses_out_of_range_paging(
    client: httpx.AsyncClient, new_customer: NewCustomer, params: dict[str, Any], loc: list[Any]
) -> None:
    assert_validation_error(await client.get("/orders", params=params, headers=new_customer().auth), loc)


@contextmanager
def recorded_statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app's engine runs inside the block, but the outbox relay's and the consumer's.

    Both kinds: those of the ORM and Core (SQLAlchemy's events), and those sent on a pooled
    connection as asyncpg's own (its query logger; the driver runs the ORM's prepared statements
    without logging them, so nothing is counted twice). Transaction control is left out.
    """
    statements: list[str] = []
    engine = app.state.runtime.engine.sync_engine

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "outbox" not in statement and "inbox" not in statement:
            statements.append(statement)

    def record_driver_query(query: Any) -> None:
        if query.query.rstrip(";").upper() not in {"BEGIN", "COMMIT", "ROLLBACK"}:
            record(None, None, query.query)

    def attach(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(record_driver_query)

    def detach(dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.driver_connection.remove_query_logger(record_driver_query)

    event.listen(engine, "before_cursor_execute", record)
    event.listen(engine.pool, "checkout", attach)
    event.listen(engine.pool, "checkin", detach)
    try:
        yield statements
    finally:
        event.remove(engine, "before_cursor_execute", record)
        event.remove(engine.pool, "checkout", attach)
        event.remove(engine.pool, "checkin", detach)


async def test_a_page_of_orders_costs_a_bounded_number_of_statements(
    app: FastAPI, client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    """No N+1: a page of 20 orders of 4 items each is read in at most 3 statements, as is one of 1."""
    alice = new_customer()
    items = [{"sku": f"SKU-{n}", "quantity": n + 1, "unit_price": 100 * n} for n in range(4)]
    first = await place(client, alice, items)
    with recorded_statements(app) as statements:
        response = await client.get("/orders", params={"limit": 1}, headers=alice.auth)
    assert response.json()["items"] == [first]
    one_order = len(statements)
    for _ in range(24):
        await place(client, alice, items)

    with recorded_statements(app) as statements:
        response = await client.get("/orders", params={"limit": 20}, headers=alice.auth)
    page = response.json()
    assert (len(page["items"]), page["total"]) == (20, 25)
    assert all(len(order["items"]) == 4 for order in page["items"])
    assert len(statements) <= 3, statements
    assert len(statements) == one_order, statements

    with recorded_statements(app) as statements:
        response = await client.get("/orders", params={"offset": 25}, headers=alice.auth)
    assert response.json() == {"items": [], "total": 25, "limit": 20, "offset": 25}
    assert len(statements) <= 3, statements


async def test_one_order_is_read_in_one_statement(
    app: FastAPI, client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    alice = new_customer()
    order = await place(client, alice)
    with recorded_statements(app) as statements:
        assert (await client.get(f"/orders/{order['id']}", headers=alice.auth)).json() == order
    assert len(statements) == 1, statements
