"""`GET /asyncapi.json`: what notifications receives, from its SUBSCRIPTIONS; it sends nothing."""

from __future__ import annotations

import httpx

from fastmicro.asyncapi import message_name
from notifications.handlers import SUBSCRIPTIONS


async def test_notifications_serves_every_subscription_and_sends_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    operations = response.json()["operations"]

    receives = {name for name, operation in operations.items() if operation["action"] == "receive"}
    assert receives == {f"notifications.receive.{message_name(s.event)}" for s in SUBSCRIPTIONS}
    assert not any(".send." in name for name in operations)
    assert "notifications.deadLetter" in operations
