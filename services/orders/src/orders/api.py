"""The orders HTTP API: schemas in, use case, schemas out. No rules here."""

from __future__ import annotations

from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, status

from fastmicro.errors import problems
from fastmicro.fields import MAX_OFFSET
from fastmicro.idempotency import UserIdempotencyKey
from fastmicro.openapi import link
from fastmicro.security import CurrentUser
from orders.dependencies import OrderServiceDep
from orders.schemas import OrderCreate, OrderOut, OrderPage

router = APIRouter(tags=["orders"])
# From an Order to what can be done with it (the fuzzer's stateful tests follow them too).
_ORDER = {"order_id": "$response.body#/id"}
_ORDER_LINKS = {
    "links": {
        "GetOrder": link("GET", "/orders/{order_id}", **_ORDER),
        "CancelOrder": link("POST", "/orders/{order_id}/cancel", **_ORDER),
    }
}


@router.post(
    "/orders", status_code=status.HTTP_201_CREATED, responses={201: _ORDER_LINKS, **problems(401, 403, 409, 422)}
)
async def place_order(
    body: OrderCreate, actor: CurrentUser, service: OrderServiceDep, key: UserIdempotencyKey
) -> OrderOut:
    return OrderOut.model_validate(await service.place(actor, body, key))


@router.get("/orders", responses=problems(401, 422))
async def list_orders(
    actor: CurrentUser,
    service: OrderServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> OrderPage:
    orders, total = await service.list(actor, limit=limit, offset=offset)
    return OrderPage(
        items=[OrderOut.model_validate(order) for order in orders], total=total, limit=limit, offset=offset
    )


@router.get("/orders/{order_id}", responses={200: _ORDER_LINKS, **problems(401, 404, 422)})
async def get_order(order_id: UUID, actor: CurrentUser, service: OrderServiceDep) -> OrderOut:
    return await service.get(actor, order_id)


@router.post("/orders/{order_id}/cancel", responses={200: _ORDER_LINKS, **problems(401, 404, 409, 422)})
async def cancel_order(
    order_id: UUID, actor: CurrentUser, service: OrderServiceDep, key: UserIdempotencyKey
) -> OrderOut:
    return OrderOut.model_validate(await service.cancel(actor, order_id, key))
