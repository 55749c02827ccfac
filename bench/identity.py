"""The raw twins answer byte for byte what the project answers, and write the outbox row it writes.

GET /orders/{id} and GET /users/me are compared directly. A POST creates a new order, so each
side's POST answer is compared with the other side's GET of the order it created: the project
answers a GET of an order with the bytes it answered its POST with, so equal bytes mean the
same body. The OrderPlaced rows the two POSTs left in the outbox must have the same shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx
import orjson

from bench.config import Setup
from bench.seed import ORDER_BODY


@dataclass
class Identity:
    identical: dict[str, bool] = field(default_factory=dict)
    differences: list[str] = field(default_factory=list)

    def compare(self, name: str, project: httpx.Response, raw: httpx.Response, statuses: tuple[int, int]) -> None:
        """`project` and `raw` carry the same bytes, with the statuses expected of each."""
        same = (project.status_code, raw.status_code) == statuses and project.content == raw.content
        self.identical[name] = self.identical.get(name, True) and same
        if not same:
            self.differences.append(
                f"{name}: project {project.status_code} {project.content!r}\n{' ' * len(name)}  raw     "
                f"{raw.status_code} {raw.content!r}"
            )


async def check(setup: Setup, token: str, order_id: str) -> Identity:
    result = Identity()
    auth = {"Authorization": f"Bearer {token}"}
    orders, raw_orders = setup.url("orders"), setup.raw_url("orders")
    async with httpx.AsyncClient(timeout=10, headers=auth) as client:
        result.compare(
            "get_order",
            await client.get(f"{orders}/orders/{order_id}"),
            await client.get(f"{raw_orders}/orders/{order_id}"),
            (200, 200),
        )
        result.compare(
            "get_me",
            await client.get(f"{setup.url('users')}/users/me"),
            await client.get(f"{setup.raw_url('users')}/users/me"),
            (200, 200),
        )
        body = orjson.dumps(ORDER_BODY)
        json_header = {"Content-Type": "application/json"}
        raw_post = await client.post(f"{raw_orders}/orders", content=body, headers=json_header)
        project_post = await client.post(f"{orders}/orders", content=body, headers=json_header)
        created = [raw_post.json().get("id"), project_post.json().get("id")]
        if raw_post.status_code == project_post.status_code == 201:
            project_get = await client.get(f"{orders}/orders/{created[0]}")
            raw_get = await client.get(f"{raw_orders}/orders/{created[1]}")
            result.compare("post_order", project_get, raw_post, (200, 201))
            result.compare("post_order", project_post, raw_get, (201, 200))
        else:
            result.compare("post_order", project_post, raw_post, (201, 201))
    if all(created):
        await _compare_outbox(setup, created[0], created[1], result)
    return result


async def _compare_outbox(setup: Setup, raw_order: str, project_order: str, result: Identity) -> None:
    connection = await asyncpg.connect(setup.dsn("orders"))
    try:
        rows = {
            row["order_id"]: row
            for row in await connection.fetch(
                "SELECT payload->'data'->>'order_id' AS order_id, routing_key, payload::text AS payload, attempts"
                " FROM outbox WHERE payload->'data'->>'order_id' = ANY($1::text[])",
                [raw_order, project_order],
            )
        }
    finally:
        await connection.close()
    if len(rows) != 2:
        result.identical["outbox_row"] = False
        result.differences.append(f"outbox_row: found {len(rows)} of the 2 OrderPlaced rows")
        return
    shapes = [_shape(rows[order]) for order in (project_order, raw_order)]
    result.identical["outbox_row"] = shapes[0] == shapes[1]
    if shapes[0] != shapes[1]:
        result.differences.append(f"outbox_row: project {shapes[0]}\n            raw     {shapes[1]}")


def _shape(row: Any) -> dict[str, Any]:
    """What two OrderPlaced rows of the same order body share: all but ids and times."""
    payload = orjson.loads(row["payload"])
    data = payload["data"]
    return {
        "routing_key": row["routing_key"],
        "attempts": row["attempts"],
        "keys": sorted(payload),
        "type": (payload["type"], payload["version"], payload["source"]),
        "correlation_id": type(payload["correlation_id"]).__name__,
        "causation_id": payload["causation_id"],
        "data_keys": sorted(data),
        "data": (data["items"], data["total"]),
    }
