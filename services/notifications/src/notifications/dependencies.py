"""The notifications service's Annotated dependencies."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from fastmicro.web import RuntimeDep
from notifications.service import NotificationService
from notifications.uow import NotificationsUnitOfWork


async def get_notification_service(runtime: RuntimeDep) -> NotificationService:
    return NotificationService(NotificationsUnitOfWork(runtime.session_factory))


NotificationServiceDep = Annotated[NotificationService, Depends(get_notification_service)]
