"""The notifications HTTP API: the caller's notifications, a page at a time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from fastmicro.errors import problems
from fastmicro.fields import MAX_OFFSET
from fastmicro.security import CurrentUser
from notifications.dependencies import NotificationServiceDep
from notifications.schemas import NotificationOut, NotificationPage

router = APIRouter(tags=["notifications"])


@router.get("/notifications", responses=problems(401, 422))
async def list_notifications(
    actor: CurrentUser,
    service: NotificationServiceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> NotificationPage:
    page = await service.list_mine(actor, limit=limit, offset=offset)
    return NotificationPage(
        items=[NotificationOut.model_validate(item) for item in page.items],
        total=page.total,
        limit=page.limit,
        offset=page.offset,
    )
