"""The notifications service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.web import RuntimeDep
from notifications.service import NotificationService
from notifications.uow import NotificationsUnitOfWork


async def get_uow(runtime: RuntimeDep) -> NotificationsUnitOfWork:
    return NotificationsUnitOfWork(runtime.session_factory)


UoWDep = Annotated[NotificationsUnitOfWork, Depends(get_uow)]


async def get_notification_service(uow: UoWDep) -> NotificationService:
    return NotificationService(uow)


NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]
