"""GET /notifications: the caller's own, newest first, a page at a time; 401 and 422 as problems."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import jwt
import pytest

from fastmicro.messaging import Broker
from fastmicro.testing import publish_event
from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import DEV_SIGNING_KEY, SigningKey
from fastmicro_contracts.users import UserUpdated
from notifications.settings import NotificationsSettings

from .helpers import Inbox, assert_problem, bearer, new_user, order_placed, parse_timestamp, unique_email

Inboxes = Callable[[uuid.UUID], Inbox]


async def test_a_user_pages_through_their_own_notifications_newest_first(
    client: httpx.AsyncClient, test_broker: Broker, inbox: Inboxes
) -> None:
    user, other = new_user(), new_user()
    mine = inbox(user.user_id)
    # One at a time, so that their order is the order of the events.
    await publish_event(test_broker, user)
    await mine.wait_sent(1)
    await publish_event(test_broker, UserUpdated(user_id=user.user_id, email=unique_email(), name="Renamed"))
    await mine.wait_sent(2)
    await publish_event(test_broker, order_placed(user.user_id))
    await mine.wait_sent(3)
    await publish_event(test_broker, other)
    await inbox(other.user_id).wait_sent(1)

    everything = await mine.page()
    assert (everything["total"], everything["limit"], everything["offset"]) == (3, 20, 0)
    items = everything["items"]
    assert [item["kind"] for item in items] == ["order_placed", "account_updated", "welcome"]
    assert {item["user_id"] for item in items} == {str(user.user_id)}
    created = [parse_timestamp(item["created_at"]) for item in items]
    assert created == sorted(created, reverse=True)

    first = await mine.page(limit=2)
    assert (first["total"], first["limit"], first["offset"]) == (3, 2, 0)
    assert [item["id"] for item in first["items"]] == [item["id"] for item in items[:2]]
    second = await mine.page(limit=2, offset=2)
    assert (second["total"], second["limit"], second["offset"]) == (3, 2, 2)
    assert [item["id"] for item in second["items"]] == [items[2]["id"]]
    beyond = await mine.page(limit=2, offset=10)
    assert (beyond["items"], beyond["total"]) == ([], 3)

    [theirs] = (await inbox(other.user_id).page())["items"]
    assert theirs["user_id"] == str(other.user_id)
    assert theirs["id"] not in {item["id"] for item in items}
    assert (await inbox(uuid.uuid4()).page()) == {"items": [], "total": 0, "limit": 20, "offset": 0}
    assert "body" not in items[0]


async def test_listing_needs_a_valid_token(client: httpx.AsyncClient, settings: NotificationsSettings) -> None:
    missing = await client.get("/notifications")
    assert_problem(missing, 401, "not_authenticated")
    assert missing.headers["www-authenticate"] == "Bearer"

    now = datetime.now(UTC)
    claims = {
        "sub": str(uuid.uuid4()),
        "iss": settings.jwt_issuer,
        "aud": settings.jwt_audience,
        "iat": now - timedelta(hours=2),
        "exp": now - timedelta(hours=1),
        "jti": uuid.uuid4().hex,
    }
    key = SigningKey.from_json(DEV_SIGNING_KEY)
    expired = jwt.encode(claims, key.key, algorithm=key.algorithm, headers={"kid": key.kid})
    impostor = SigningKey.from_json(new_signing_key(key.kid))
    forged = jwt.encode(
        {**claims, "exp": now + timedelta(hours=1)}, impostor.key, algorithm="EdDSA", headers={"kid": key.kid}
    )
    for token in ("garbage", expired, forged):
        response = await client.get("/notifications", headers=bearer(token))
        assert_problem(response, 401, "invalid_token")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("offset=-1", "offset"),
        ("offset=x", "offset"),
        ("offset=9223372036854775808", "offset"),  # past PostgreSQL's bigint
    ],
)
async def test_bad_paging_is_refused(client: httpx.AsyncClient, inbox: Inboxes, query: str, field: str) -> None:
    response = await client.get(f"/notifications?{query}", headers=inbox(uuid.uuid4()).headers)
    body = assert_problem(response, 422, "validation_error")
    assert ["query", field] in [error["loc"] for error in body["errors"]]
