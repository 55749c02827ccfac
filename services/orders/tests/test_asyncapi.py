"""`GET /asyncapi.json`: orders' part of docs/asyncapi.yaml, valid AsyncAPI 3, read from its own code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import yaml

from fastmicro.workspace import find_root

ROOT = find_root(Path(__file__))


async def test_orders_serves_what_it_sends_and_receives_as_the_repository_document_says(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    jsonschema.Draft7Validator(json.loads((ROOT / "tools/schemas/asyncapi-3.0.0.json").read_text())).validate(document)

    assert sorted(document["operations"]) == [
        "orders.deadLetter",
        "orders.receive.UserDeleted.v1",
        *(f"orders.retry.{ms}ms" for ms in (200, 500)),  # the tests' CONSUMER_RETRY_DELAYS
        "orders.send.OrderCancelled.v1",
        "orders.send.OrderPlaced.v2",  # the newest version only: v1 is no longer sent
    ]
    repository = yaml.safe_load((ROOT / "docs/asyncapi.yaml").read_text())
    for name in ("orders.receive.UserDeleted.v1", "orders.send.OrderPlaced.v2", "orders.send.OrderCancelled.v1"):
        served, committed = document["operations"][name], repository["operations"][name]
        assert {k: served[k] for k in ("action", "channel", "messages")} == {
            k: committed[k] for k in ("action", "channel", "messages")
        }
    for message, body in document["components"]["messages"].items():
        assert body == repository["components"]["messages"][message]
