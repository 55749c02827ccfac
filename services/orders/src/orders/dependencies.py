"""The orders service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.web import RuntimeDep
from orders.service import OrderService
from orders.uow import OrdersUnitOfWork


async def get_order_service(runtime: RuntimeDep) -> OrderService:
    return OrderService(OrdersUnitOfWork(runtime.session_factory))


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]
