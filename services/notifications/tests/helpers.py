"""A real SMTP server for the tests, and the waits and assertions the notifications tests share."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import threading
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any, TypeVar, cast

import httpx
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.testing.tokens import signer_for
from fastmicro.tokens import TokenSigner
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import OrderLine, OrderPlaced
from fastmicro_contracts.users import UserCreated
from notifications.models import Notification
from notifications.settings import NotificationsSettings

T = TypeVar("T")

NOTIFICATION_FIELDS = {
    "id",
    "user_id",
    "kind",
    "channel",
    "recipient",
    "subject",
    "status",
    "event_id",
    "created_at",
    "sent_at",
}

#: Mail to addresses with this prefix is refused by the test server with a permanent 550.
BOUNCE_PREFIX = "bounce-"


def free_port() -> int:
    """A port nothing listens on (for a moment: the test then starts, or does not start, a server there)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage
    peer: object = None  # the client end of the connection it came over

    @property
    def body(self) -> str:
        return cast("str", self.message.get_content())


class MailCollector:
    """An aiosmtpd handler that keeps what it accepts (it runs in the controller's thread)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._received: list[Mail] = []
        self.refused: list[str] = []

    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith(BOUNCE_PREFIX):
            with self._lock:
                self.refused.append(address)
            return "550 5.1.1 No such mailbox"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        mail = Mail(envelope.mail_from or "", list(envelope.rcpt_tos), message, session.peer)
        with self._lock:
            self._received.append(mail)
        return "250 Message accepted for delivery"

    @property
    def received(self) -> list[Mail]:
        with self._lock:
            return list(self._received)


class SmtpSink:
    """aiosmtpd's threaded `Controller` on 127.0.0.1:`port`, collecting every message it accepts."""

    def __init__(self, port: int | None = None, collector: MailCollector | None = None) -> None:
        self.port = port or free_port()
        self.collector = collector or MailCollector()
        self._controller = Controller(self.collector, hostname="127.0.0.1", port=self.port)

    async def start(self) -> SmtpSink:
        await asyncio.to_thread(self._controller.start)
        return self

    async def stop(self) -> None:
        await asyncio.to_thread(self._controller.stop)

    def to(self, address: str) -> list[Mail]:
        return [mail for mail in self.collector.received if address in mail.rcpt_tos]

    async def wait_for(self, address: str, *, count: int = 1, within: float = 10.0) -> list[Mail]:
        """Wait until `count` messages to `address` arrived; fail the test on timeout."""
        return await eventually(lambda: _at_least(self.to(address), count), within=within)


def _at_least(items: list[T], count: int) -> list[T] | None:
    return items if len(items) >= count else None


async def eventually(probe: Callable[[], T | None], *, within: float = 10.0, every: float = 0.05) -> T:
    """Poll `probe` until it returns something other than None (or fail on timeout)."""
    async with asyncio.timeout(within):
        while (result := probe()) is None:
            await asyncio.sleep(every)
        return result


async def eventually_async(probe: Callable[[], Awaitable[T | None]], *, within: float = 10.0, every: float = 0.05) -> T:
    async with asyncio.timeout(within):
        while (result := await probe()) is None:
            await asyncio.sleep(every)
        return result


def token_codec(settings: NotificationsSettings) -> TokenSigner:
    """Tokens as the users service issues them (its development key, issuer and audience)."""
    return signer_for(settings)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Inbox:
    """A user's view through GET /notifications."""

    def __init__(self, client: httpx.AsyncClient, tokens: TokenSigner, user_id: uuid.UUID) -> None:
        self._client = client
        self.headers = bearer(tokens.issue(user_id).access_token)
        self.user_id = user_id

    async def page(self, **params: int) -> dict[str, Any]:
        response = await self._client.get("/notifications", params=params, headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def items(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self.page(limit=100))["items"]
        return items

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], *, within: float = 10.0
    ) -> list[dict[str, Any]]:
        """Poll until the user's notifications (newest first) satisfy `predicate`."""

        async def probe() -> list[dict[str, Any]] | None:
            items = await self.items()
            return items if predicate(items) else None

        return await eventually_async(probe, within=within)

    async def wait_sent(self, count: int, *, within: float = 10.0) -> list[dict[str, Any]]:
        """Wait until the user has exactly `count` notifications, all sent."""
        return await self.wait_for(
            lambda items: len(items) == count and all(item["status"] == "sent" for item in items), within=within
        )


async def wait_handled(engine: AsyncEngine, event_id: uuid.UUID, *, within: float = 10.0) -> None:
    """Wait until the consumer committed its handling of the event `event_id` (its inbox row)."""

    async def probe() -> bool | None:
        return True if await was_handled(engine, event_id) else None

    await eventually_async(probe, within=within)


async def was_handled(engine: AsyncEngine, event_id: uuid.UUID) -> bool:
    async with engine.connect() as conn:
        found = await conn.scalar(text("SELECT count(*) FROM inbox WHERE message_id = :id"), {"id": event_id})
    return bool(found)


async def notification_rows(engine: AsyncEngine, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every column of `user_id`'s notifications, as stored (the body and the attempts included)."""
    async with engine.connect() as conn:
        result = await conn.execute(
            text("SELECT * FROM notifications WHERE user_id = :user_id ORDER BY created_at"), {"user_id": user_id}
        )
        return [dict(row) for row in result.mappings()]


async def contact_row(engine: AsyncEngine, user_id: uuid.UUID) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (
            (await conn.execute(text("SELECT * FROM contacts WHERE user_id = :user_id"), {"user_id": user_id}))
            .mappings()
            .first()
        )
    return dict(row) if row is not None else None


def pending_welcome(now: datetime) -> Notification:
    """A pending welcome notification, due at `now`, as a handler writes it."""
    return Notification.pending(
        kind="welcome",
        user_id=uuid.uuid4(),
        recipient=unique_email(),
        subject="Welcome to fastmicro",
        body="Hello",
        event_id=uuid.uuid4(),
        now=now,
    )


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}@example.com"


def new_user(email: str | None = None, name: str = "Ada Lovelace") -> UserCreated:
    return UserCreated(user_id=uuid.uuid4(), email=email or unique_email(), name=name)


def order_placed(user_id: uuid.UUID, *, total: int = 3099, currency: str = "EUR") -> OrderPlaced:
    return OrderPlaced(
        order_id=uuid.uuid4(),
        user_id=user_id,
        items=(OrderLine(sku="SKU-1", quantity=2, unit_price=1250), OrderLine(sku="SKU-2", quantity=1, unit_price=599)),
        total=Money.of_minor_units(total, currency),
    )


def parse_timestamp(value: str) -> datetime:
    """An RFC 3339 timestamp in UTC, written with a trailing `Z`."""
    assert value.endswith("Z"), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0)
    return parsed


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert (body["status"], body["code"], body["type"]) == (status, code, "about:blank")
    assert body["title"]
    assert body["detail"]
    return body
