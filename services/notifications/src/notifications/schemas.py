"""HTTP response bodies of the notifications API."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from pydantic import BaseModel, ConfigDict

from notifications.models import Channel, NotificationKind, NotificationStatus


class NotificationOut(BaseModel):
    """A notification as its owner sees it: never its body."""

    model_config = ConfigDict(from_attributes=True)

    id: UUID
    user_id: UUID
    kind: NotificationKind
    channel: Channel
    recipient: str
    subject: str
    status: NotificationStatus
    event_id: UUID
    created_at: datetime
    sent_at: datetime | None


class NotificationPage(BaseModel):
    items: list[NotificationOut]
    total: int
    limit: int
    offset: int
