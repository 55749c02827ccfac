"""The OpenAPI document says what the API does: what it documents as valid is accepted, and the rest refused.

Found by `make fuzz`; each case is pinned here as the API's own behaviour.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from fastmicro_contracts.currencies import ACTIVE_CURRENCIES

from .conftest import NewCustomer
from .helpers import assert_order, assert_problem, assert_validation_error

ITEM = {"sku": "SKU-1", "quantity": 1, "unit_price": 100}


@pytest.fixture(scope="module")
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def schema(document: dict[str, Any], name: str) -> dict[str, Any]:
    properties: dict[str, Any] = document["components"]["schemas"][name]["properties"]
    return properties


async def test_whole_numbers_written_with_a_fraction_of_zero_are_integers(
    client: httpx.AsyncClient, new_customer: NewCustomer
) -> None:
    """JSON Schema's `integer` is any number without a fractional part: 2.0 is the integer 2."""
    body = {"items": [{"sku": "A", "quantity": 2.0, "unit_price": 1250.0}]}
    order = assert_order(await client.post("/orders", json=body, headers=new_customer().auth), 201)
    assert order["items"] == [{"sku": "A", "quantity": 2, "unit_price": 1250, "line_total": 2500}]
    assert order["total"] == 2500


async def test_the_document_lists_exactly_the_accepted_currencies(document: dict[str, Any]) -> None:
    assert set(schema(document, "OrderCreate")["currency"]["enum"]) == ACTIVE_CURRENCIES


async def test_a_code_the_document_does_not_list_is_refused(
    client: httpx.AsyncClient, new_customer: NewCustomer, document: dict[str, Any]
) -> None:
    assert "DNB" not in schema(document, "OrderCreate")["currency"]["enum"]
    response = await client.post("/orders", json={"items": [ITEM], "currency": "DNB"}, headers=new_customer().auth)
    assert_validation_error(response, ["body", "currency"])


@pytest.mark.parametrize("sku", ["\u3000\u2003", "\u00a0", " " + "S" * 64])
async def test_a_sku_the_document_refuses_is_refused(
    client: httpx.AsyncClient, new_customer: NewCustomer, document: dict[str, Any], sku: str
) -> None:
    field = schema(document, "OrderItemIn")["sku"]
    assert len(sku) > field["maxLength"] or re.search(field["pattern"], sku) is None
    body = {"items": [{**ITEM, "sku": sku}]}
    assert_validation_error(
        await client.post("/orders", json=body, headers=new_customer().auth), ["body", "items", 0, "sku"]
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("OPTIONS", "/orders", "GET, POST"),
        ("DELETE", "/orders/6a0f8f1e-3c63-4b8e-9d3e-2d1b1e7c4f00", "GET"),
        ("GET", "/orders/6a0f8f1e-3c63-4b8e-9d3e-2d1b1e7c4f00/cancel", "POST"),
    ],
)
async def test_a_method_a_path_does_not_serve_is_405_with_its_allowed_methods(
    client: httpx.AsyncClient, new_customer: NewCustomer, method: str, path: str, allowed: str
) -> None:
    response = await client.request(method, path, headers=new_customer().auth)
    assert_problem(response, 405, "method_not_allowed")
    assert response.headers["allow"] == allowed


async def test_a_body_that_cannot_be_read_is_422(client: httpx.AsyncClient, new_customer: NewCustomer) -> None:
    headers = {**new_customer().auth, "Content-Type": "application/json"}
    response = await client.post("/orders", content=b'{"items": [{"sku": "\xff"}]}', headers=headers)
    assert_validation_error(response, ["body"])


async def test_an_order_links_to_what_can_be_done_with_it(document: dict[str, Any]) -> None:
    targets = {"#/paths/~1orders~1{order_id}/get", "#/paths/~1orders~1{order_id}~1cancel/post"}
    for path, method, status in (
        ("/orders", "post", "201"),
        ("/orders/{order_id}", "get", "200"),
        ("/orders/{order_id}/cancel", "post", "200"),
    ):
        links = document["paths"][path][method]["responses"][status]["links"]
        assert {link["operationRef"] for link in links.values()} == targets
        assert all(link["parameters"] == {"order_id": "$response.body#/id"} for link in links.values())
