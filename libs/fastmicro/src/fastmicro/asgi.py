"""What the kernel's ASGI middlewares share: the response status, seen on its way out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.types import Message, Send


class StatusRecorder:
    """Wraps an ASGI `send`: records the response's status, and adds `headers` to its start.

    The status is 500 until a response starts: an exception before that is answered as one.
    """

    def __init__(self, send: Send, headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
        self._send = send
        self._headers = list(headers)
        self.status = 500
        self.started = False

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            self.started = True
            if self._headers:
                message["headers"] = [*message.get("headers", []), *self._headers]
        await self._send(message)
