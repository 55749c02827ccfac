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

        # Before the account goes: every notification so far went out exactly once.
        open_order = await orders.post("/orders", json=order_body, headers=_auth(token))
        assert open_order.status_code == 201, open_order.text
        before = await eventually(lambda: _sent_at_least(notifications_of(notifications, token), 4))
        assert Counter(n["kind"] for n in before) == Counter({"welcome": 1, "order_placed": 2, "order_cancelled": 1})
        assert all(count == 1 for count in Counter(n["event_id"] for n in before).values()), before

        # Delete the account: users refuses its token at once, orders and notifications once they
        # have handled UserDeleted (its open order is cancelled and its contact erased with it).
        assert (await users.delete(f"/users/{user_id}", headers=_auth(token))).status_code == 204
        assert (await users.get("/users/me", headers=_auth(token))).status_code == 401

        async def refused_everywhere() -> bool:
            answers = [
                await orders.get("/orders", headers=_auth(token)),
                await orders.post("/orders", json=order_body, headers=_auth(token)),
                await notifications.get("/notifications", headers=_auth(token)),
            ]
            return all(answer.status_code == 401 for answer in answers)

        await eventually(refused_everywhere)

        # Every mail went out exactly once. The open order's cancellation is mailed only if
        # notifications handled that OrderCancelled (via orders) before the UserDeleted (straight
        # from users): either order may happen.
        await asyncio.sleep(1.0)
        message_ids = Counter(str(m["Message-ID"]) for m in stack.mailbox.to(email))
        assert all(count == 1 for count in message_ids.values()), message_ids
        assert len(message_ids) in {len(before), len(before) + 1}
    total = time.monotonic() - started
    print(f"\ne2e journey: {total:.1f} s; order placed -> notification sent: {order_latency * 1000:.0f} ms")


async def _as_async(value: Any) -> Any:
    return value


async def _sent_at_least(probe: Any, count: int) -> list[dict[str, Any]]:
    sent = [n for n in await probe if n["status"] == "sent"]
    return sent if len(sent) >= count else []
