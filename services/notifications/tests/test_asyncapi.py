"""`GET /asyncapi.json`: what notifications receives, from its SUBSCRIPTIONS and their upcasters; it sends nothing."""

from __future__ import annotations

import httpx

from fastmicro.asyncapi import message_name
from notifications.handlers import SUBSCRIPTIONS


async def test_notifications_serves_every_subscription_and_sends_nothing(client: httpx.AsyncClient) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    operations = response.json()["operations"]

    receives = {name for name, operation in operations.items() if operation["action"] == "receive"}
    subscribed = {f"notifications.receive.{message_name(s.event)}" for s in SUBSCRIPTIONS}
    # OrderPlaced v1 is read too: still queued or dead-lettered, it is upcast to the subscribed v2.
    assert receives == subscribed | {"notifications.receive.OrderPlaced.v1"}
    assert "notifications.receive.OrderPlaced.v2" in subscribed
    assert "upcast to v2" in operations["notifications.receive.OrderPlaced.v1"]["summary"]
    assert not any(".send." in name for name in operations)
    assert "notifications.deadLetter" in operations
