"""Per-task context that travels with a request or a message: who caused what."""

from __future__ import annotations

from contextvars import ContextVar
from uuid import UUID

#: The request id of the HTTP call (or the correlation id of the message) being handled.
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
#: The id of the event being handled, so the events it causes can name it.
causation_id: ContextVar[UUID | None] = ContextVar("causation_id", default=None)
