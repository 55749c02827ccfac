"""A user's journey through the whole stack, over HTTP only: in at the API, out at the SMTP server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

import httpx

from e2e_stack import Stack

PASSWORD = "correct horse battery"


async def eventually(probe: Any, *, within: float = 30.0, every: float = 0.1) -> Any:
    """Poll `probe()` until it returns something truthy; fail with its last answer."""
    last: Any = None
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if last := await probe():
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"not within {within}s; last answer: {last!r}")


async def notifications_of(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    response = await client.get("/notifications", params={"limit": 100}, headers=_auth(token))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_register_order_cancel_delete(stack: Stack) -> None:
    email = f"journey-{uuid.uuid4().hex[:8]}@example.com"
    started = time.monotonic()
    async with (
        stack.client("users") as users,
        stack.client("orders") as orders,
        stack.client("notifications") as notifications,
    ):
        # Register: a welcome email arrives and is `sent` in the user's notifications.
        created = await users.post("/users", json={"email": email, "password": PASSWORD, "name": "Journey"})
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        login = await users.post("/auth/token", data={"username": email, "password": PASSWORD})
        token = login.json()["access_token"]

        async def sent(kind: str) -> list[dict[str, Any]]:
            return [
                n for n in await notifications_of(notifications, token) if n["kind"] == kind and n["status"] == "sent"
            ]

        [welcome] = await eventually(lambda: sent("welcome"))
        assert welcome["recipient"] == email
        assert welcome["user_id"] == user_id
        assert await eventually(lambda: _as_async(stack.mailbox.to(email)))

        # Place an order: its confirmation follows.
        order_body = {"items": [{"sku": "BOOK-1", "quantity": 2, "unit_price": 1250}], "currency": "EUR"}
        placed_at = time.monotonic()
        placed = await orders.post("/orders", json=order_body, headers=_auth(token))
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["total"] == 2500
        await eventually(lambda: sent("order_placed"))
        order_latency = time.monotonic() - placed_at

        # Cancel it: a cancellation follows; a second cancel is a conflict.
        cancelled = await orders.post(f"/orders/{order['id']}/cancel", headers=_auth(token))
        assert cancelled.status_code == 200
        assert cancelled.json()["status"] == "cancelled"
        assert (await orders.post(f"/orders/{order['id']}/cancel", headers=_auth(token))).status_code == 409
        await eventually(lambda: sent("order_cancelled"))

        # Delete the account: open orders are cancelled, the contact erased, new orders refused.
        open_order = (await orders.post("/orders", json=order_body, headers=_auth(token))).json()
        await eventually(lambda: _count(sent("order_placed"), 2))
        assert (await users.delete(f"/users/{user_id}", headers=_auth(token))).status_code == 204

        async def open_order_cancelled() -> bool:
            response = await orders.get(f"/orders/{open_order['id']}", headers=_auth(token))
            return bool(response.json()["status"] == "cancelled")

        await eventually(open_order_cancelled)

        async def refused() -> bool:
            response = await orders.post("/orders", json=order_body, headers=_auth(token))
            return response.status_code == 403

        await eventually(refused)

        async def erased() -> list[dict[str, Any]]:
            items = await notifications_of(notifications, token)
            return items if all(n["recipient"] == "" for n in items) else []

        await eventually(erased)
        assert (await users.get("/users/me", headers=_auth(token))).status_code == 401

        # Every notification went out exactly once.
        await asyncio.sleep(1.0)
        final = await notifications_of(notifications, token)
        event_ids = Counter(n["event_id"] for n in final)
        assert all(count == 1 for count in event_ids.values()), event_ids
        message_ids = Counter(str(m["Message-ID"]) for m in stack.mailbox.to(email))
        assert all(count == 1 for count in message_ids.values()), message_ids
        assert len(message_ids) == sum(1 for n in final if n["status"] == "sent")
        assert_sent_kinds(Counter(n["kind"] for n in final if n["status"] == "sent"))
    total = time.monotonic() - started
    print(f"\ne2e journey: {total:.1f} s; order placed -> notification sent: {order_latency * 1000:.0f} ms")


def assert_sent_kinds(sent: Counter[str]) -> None:
    """The order cancelled because its user was deleted is mailed only if notifications handled that
    OrderCancelled (via orders) before the UserDeleted (straight from users): either order may happen."""
    assert sent.pop("order_cancelled") in {1, 2}
    assert sent == Counter({"welcome": 1, "order_placed": 2})


async def _as_async(value: Any) -> Any:
    return value


async def _count(probe: Any, expected: int) -> bool:
    return len(await probe) == expected
