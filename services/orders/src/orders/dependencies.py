"""The orders service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.web import RuntimeDep
from orders.service import OrderService
from orders.uow import OrdersUnitOfWork


async def get_uow(runtime: RuntimeDep) -> OrdersUnitOfWork:
    return OrdersUnitOfWork(runtime.session_factory)


UoWDep = Annotated[OrdersUnitOfWork, Depends(get_uow)]


async def get_order_service(uow: UoWDep) -> OrderService:
    return OrderService(uow)


OrderServiceDep = Annotated[OrderService, Depends(get_order_service)]
