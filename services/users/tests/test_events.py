"""What registration puts on the bus, and the request id that ties a request to its events."""

from __future__ import annotations

import json
import uuid

import aio_pika
import httpx

from fastmicro.messaging import Broker
from fastmicro.testing import catch_events

from .conftest import PASSWORD, unique_email
from .helpers import for_user, parse_timestamp


async def test_registering_publishes_exactly_one_user_created(client: httpx.AsyncClient, test_broker: Broker) -> None:
    email, request_id = unique_email(), f"req-{uuid.uuid4().hex}"
    async with catch_events(test_broker, "users.#") as catcher:
        response = await client.post(
            "/users",
            json={"email": email, "password": PASSWORD, "name": "Ada Lovelace"},
            headers={"X-Request-ID": request_id},
        )
        assert response.status_code == 201, response.text
        user_id = response.json()["id"]
        await catcher.wait_for(for_user(user_id))
        await catcher.settle(0.5)
    [(_, message)] = catcher.matching(for_user(user_id))

    envelope = json.loads(message.body)
    assert set(envelope) == {
        "id",
        "type",
        "version",
        "source",
        "occurred_at",
        "correlation_id",
        "causation_id",
        "data",
    }
    uuid.UUID(envelope["id"])
    assert envelope["type"] == "UserCreated"
    assert envelope["version"] == 1
    assert envelope["source"] == "users"
    parse_timestamp(envelope["occurred_at"])
    assert envelope["correlation_id"] == request_id
    assert envelope["causation_id"] is None
    assert envelope["data"] == {"user_id": user_id, "email": email, "name": "Ada Lovelace"}
    assert PASSWORD not in message.body.decode()

    assert message.routing_key == "users.UserCreated"
    assert message.message_id == envelope["id"]
    assert message.type == "UserCreated"
    assert message.content_type == "application/json"
    assert message.delivery_mode == aio_pika.DeliveryMode.PERSISTENT
    assert int(message.delivery_mode) == 2


async def test_the_request_id_is_echoed(client: httpx.AsyncClient) -> None:
    request_id = f"req-{uuid.uuid4().hex}"
    created = await client.post(
        "/users",
        json={"email": unique_email(), "password": PASSWORD, "name": "Ada"},
        headers={"X-Request-ID": request_id},
    )
    assert created.status_code == 201
    assert created.headers["x-request-id"] == request_id
    refused = await client.get("/users/me", headers={"X-Request-ID": request_id})
    assert refused.status_code == 401
    assert refused.headers["x-request-id"] == request_id


async def test_a_request_without_an_id_is_given_one(client: httpx.AsyncClient) -> None:
    first, second = await client.get("/users/me"), await client.get("/users/me")
    assert first.headers["x-request-id"]
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
