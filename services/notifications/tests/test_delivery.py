"""Sending when the mail server is down, comes back, never comes back, or refuses an address."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from fastmicro.messaging import Broker
from fastmicro.testing import publish_event

from .conftest import ServiceFactory
from .helpers import (
    BOUNCE_PREFIX,
    Inbox,
    SmtpSink,
    eventually_async,
    free_port,
    new_user,
    notification_rows,
    unique_email,
)

Inboxes = Callable[[uuid.UUID], Inbox]


async def the_row(
    engine: AsyncEngine, user_id: uuid.UUID, predicate: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Wait until `user_id`'s one notification satisfies `predicate`; return it as stored."""

    async def probe() -> dict[str, Any] | None:
        rows = await notification_rows(engine, user_id)
        return rows[0] if len(rows) == 1 and predicate(rows[0]) else None

    return await eventually_async(probe)


async def test_mail_waits_while_the_server_is_down_and_goes_once_it_is_up(own_service: ServiceFactory) -> None:
    port = free_port()  # nothing listens here until the test starts a server
    async with own_service(smtp_port=port, send_retry_delays=[0.2] * 50) as service:
        user = new_user()
        await publish_event(service.broker, user)

        down = await the_row(service.database, user.user_id, lambda row: row["attempts"] >= 3)
        assert down["status"] == "pending"
        assert down["sent_at"] is None
        assert down["last_error"]
        [item] = await service.inbox(user.user_id).items()
        assert (item["status"], item["sent_at"]) == ("pending", None)

        sink = await SmtpSink(port).start()
        try:
            [mail] = await sink.wait_for(user.email)
            sent = await the_row(service.database, user.user_id, lambda row: row["status"] == "sent")
            assert sent["attempts"] > down["attempts"]
            assert sent["sent_at"] is not None
            assert mail.message["Message-ID"] == f"<{sent['id']}@notifications.fastmicro>"
            [item] = await service.inbox(user.user_id).wait_sent(1)
            await asyncio.sleep(0.5)
            assert len(sink.to(user.email)) == 1
        finally:
            await sink.stop()


async def test_mail_fails_when_its_attempts_run_out(own_service: ServiceFactory) -> None:
    port = free_port()
    async with own_service(smtp_port=port, send_retry_delays=[0.2]) as service:  # two attempts in all
        user = new_user()
        await publish_event(service.broker, user)

        failed = await the_row(service.database, user.user_id, lambda row: row["status"] == "failed")
        assert failed["attempts"] == 2
        assert failed["sent_at"] is None
        assert failed["last_error"].startswith(f"mail server unavailable: 127.0.0.1:{port}")
        [item] = await service.inbox(user.user_id).items()
        assert (item["status"], item["sent_at"], item["recipient"]) == ("failed", None, user.email)

        # A failed notification is final: a server that comes back does not send it.
        sink = await SmtpSink(port).start()
        try:
            await asyncio.sleep(1)
            assert sink.collector.received == []
            assert (await notification_rows(service.database, user.user_id))[0]["attempts"] == 2
        finally:
            await sink.stop()


async def test_a_permanent_refusal_fails_at_once(
    client: httpx.AsyncClient, test_broker: Broker, smtp_sink: SmtpSink, inbox: Inboxes, database: AsyncEngine
) -> None:
    user = new_user(email=unique_email(BOUNCE_PREFIX.rstrip("-")))
    await publish_event(test_broker, user)

    failed = await the_row(database, user.user_id, lambda row: row["status"] == "failed")
    assert failed["attempts"] == 1
    assert "550" in failed["last_error"]
    assert user.email in smtp_sink.collector.refused
    assert smtp_sink.to(user.email) == []
    [item] = await inbox(user.user_id).items()
    assert item["status"] == "failed"
