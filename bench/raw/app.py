"""`python -m bench.raw.app --service users|orders`: the raw twin of GET /users/me, GET /orders/{id}, POST /orders.

Starlette, asyncpg, PyJWT and orjson; the project's tables; responses byte-identical to the
project's. POST /orders writes what the project writes, in one transaction: the user's
placing lock (`lock_user_for_placing`), the order, its items, and the OrderPlaced outbox row
(whose trigger NOTIFYs the relay). Served by uvicorn as `serve` runs the project: one worker,
uvloop, httptools.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import asyncpg
import jwt
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.raw.envelopes import order_placed

CURRENCY = re.compile(r"[A-Z]{3}")
MAX_ITEMS = 100

SELECT_USER = "SELECT id, email, name, created_at, updated_at FROM users WHERE id = $1"
SELECT_ORDER = """
SELECT o.id, o.user_id, o.status, o.total, o.currency, o.created_at, o.updated_at,
       i.sku, i.quantity, i.unit_price, i.line_total
FROM orders o LEFT JOIN order_items i ON i.order_id = o.id
WHERE o.id = $1 AND o.user_id = $2
ORDER BY i.position
"""
INSERT_ORDER = """
INSERT INTO orders (id, user_id, status, currency, total, cancel_reason, created_at, updated_at)
VALUES ($1, $2, 'placed', $3, $4, NULL, $5, $5)
"""
INSERT_ITEMS = """
INSERT INTO order_items (id, order_id, position, sku, quantity, unit_price, line_total)
SELECT id, $2, position, sku, quantity, unit_price, line_total
FROM unnest($1::uuid[], $3::int[], $4::text[], $5::int[], $6::bigint[], $7::bigint[])
     AS t(id, position, sku, quantity, unit_price, line_total)
"""
INSERT_OUTBOX = "INSERT INTO outbox (id, routing_key, payload, created_at, attempts) VALUES ($1, $2, $3::jsonb, $4, 0)"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_UTC_Z)


def json_response(body: Any, status: int = 200, *, media_type: str = "application/json") -> Response:
    return Response(dumps(body), status_code=status, media_type=media_type)


def problem(status: int, title: str, detail: str, code: str) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    return json_response(body, status, media_type="application/problem+json")


class Tokens:
    """Verifies as the services do: the key named by the token's `kid`, in the JWK set, fixes the algorithm."""

    def __init__(self, jwks: str, *, issuer: str, audience: str) -> None:
        self._keys = {key.key_id: key for key in jwt.PyJWKSet.from_json(jwks).keys}
        self._issuer = issuer
        self._audience = audience
        self._options: Any = {"require": ["exp", "iat", "sub", "iss", "aud", "jti"]}

    def user_id(self, request: Request) -> uuid.UUID | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None
        try:
            key = self._keys.get(jwt.get_unverified_header(token).get("kid"))
            if key is None:
                return None
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                issuer=self._issuer,
                audience=self._audience,
                options=self._options,
            )
            return uuid.UUID(claims["sub"])
        except (jwt.PyJWTError, ValueError, TypeError):
            return None


UNAUTHORIZED = ("Unauthorized", "The token is invalid or has expired", "invalid_token")


class Handlers:
    def __init__(self, pool: asyncpg.Pool, tokens: Tokens) -> None:
        self.pool = pool
        self.tokens = tokens

    async def me(self, request: Request) -> Response:
        user_id = self.tokens.user_id(request)
        if user_id is None:
            return problem(401, *UNAUTHORIZED)
        row = await self.pool.fetchrow(SELECT_USER, user_id)
        if row is None:
            return problem(401, *UNAUTHORIZED)
        return json_response(
            {
                "id": str(row["id"]),
                "email": row["email"],
                "name": row["name"],
                "created_at": row["created_at"],
                "updated_at": row["updated_at"],
            }
        )

    async def get_order(self, request: Request) -> Response:
        user_id = self.tokens.user_id(request)
        if user_id is None:
            return problem(401, *UNAUTHORIZED)
        rows = await self.pool.fetch(SELECT_ORDER, request.path_params["order_id"], user_id)
        if not rows:
            return problem(404, "Not Found", "Order not found", "order_not_found")
        first = rows[0]
        items = [
            {"sku": r["sku"], "quantity": r["quantity"], "unit_price": r["unit_price"], "line_total": r["line_total"]}
            for r in rows
            if r["sku"] is not None
        ]
        return json_response(
            _order(
                order_id=str(first["id"]), user_id=str(first["user_id"]), status=first["status"], items=items,
                total=first["total"], currency=first["currency"], created_at=first["created_at"],
                updated_at=first["updated_at"],
            )
        )  # fmt: skip

    async def place_order(self, request: Request) -> Response:
        user_id = self.tokens.user_id(request)
        if user_id is None:
            return problem(401, *UNAUTHORIZED)
        try:
            lines, currency = _parse_order(orjson.loads(await request.body()))
        except (ValueError, TypeError, KeyError):
            return problem(422, "Unprocessable Entity", "Invalid order", "validation_error")
        order_id, now = uuid.uuid4(), datetime.now(UTC)
        totals = [quantity * price for _, quantity, price in lines]
        total = sum(totals)
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        envelope = order_placed(
            order_id=order_id,
            user_id=user_id,
            items=[{"sku": sku, "quantity": quantity, "unit_price": price} for sku, quantity, price in lines],
            total=total,
            currency=currency,
            correlation_id=request_id,
        )
        async with self.pool.acquire() as connection, connection.transaction():
            if await connection.fetchval("SELECT lock_user_for_placing($1)", user_id):
                return problem(403, "Forbidden", "The account is deleted", "account_deleted")
            await connection.execute(INSERT_ORDER, order_id, user_id, currency, total, now)
            await connection.execute(
                INSERT_ITEMS,
                [uuid.uuid4() for _ in lines],
                order_id,
                list(range(len(lines))),
                [sku for sku, _, _ in lines],
                [quantity for _, quantity, _ in lines],
                [price for _, _, price in lines],
                totals,
            )
            await connection.execute(
                INSERT_OUTBOX,
                uuid.UUID(envelope["id"]),
                "orders.OrderPlaced",
                dumps(envelope).decode(),
                envelope["occurred_at"],
            )
        items = [
            {"sku": sku, "quantity": quantity, "unit_price": price, "line_total": line_total}
            for (sku, quantity, price), line_total in zip(lines, totals, strict=True)
        ]
        body = _order(
            order_id=str(order_id),
            user_id=str(user_id),
            status="placed",
            items=items,
            total=total,
            currency=currency,
            created_at=now,
            updated_at=now,
        )
        return Response(
            dumps(body), status_code=201, media_type="application/json", headers={"x-request-id": request_id}
        )

    async def ready(self, _request: Request) -> Response:
        await self.pool.fetchval("SELECT 1")
        return json_response({"status": "ok"})


def _order(
    *, order_id: str, user_id: str, status: str, items: list[dict[str, Any]], total: int, currency: str,
    created_at: datetime, updated_at: datetime,
) -> dict[str, Any]:  # fmt: skip
    """An order in the key order of the project's OrderOut."""
    return {
        "id": order_id,
        "user_id": user_id,
        "status": status,
        "items": items,
        "total": total,
        "currency": currency,
        "created_at": created_at,
        "updated_at": updated_at,
    }


def _parse_order(body: Any) -> tuple[list[tuple[str, int, int]], str]:
    items = body["items"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ITEMS:
        raise ValueError("items")
    lines = []
    for item in items:
        sku, quantity, price = str(item["sku"]).strip(), item["quantity"], item["unit_price"]
        if not 1 <= len(sku) <= 64 or type(quantity) is not int or type(price) is not int:
            raise ValueError("item")
        if not 1 <= quantity <= 10_000 or not 0 <= price <= 10_000_000_000:
            raise ValueError("item")
        lines.append((sku, quantity, price))
    currency = body.get("currency", "USD")
    if not isinstance(currency, str) or not CURRENCY.fullmatch(currency):
        raise ValueError("currency")
    return lines, currency


def create_app(service: str, database_url: str, tokens: Tokens) -> Starlette:
    state: dict[str, Handlers] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        # The project's pool: 5 + 5 overflow; here all 10 opened at start.
        pool = await asyncpg.create_pool(database_url, min_size=10, max_size=10)
        state["handlers"] = Handlers(pool, tokens)
        try:
            yield
        finally:
            await pool.close()

    def route(name: str) -> Any:
        async def endpoint(request: Request) -> Response:
            handler = getattr(state["handlers"], name)
            response: Response = await handler(request)
            return response

        return endpoint

    routes = [Route("/health/ready", route("ready"))]
    if service == "users":
        routes.append(Route("/users/me", route("me")))
    else:
        routes += [
            Route("/orders", route("place_order"), methods=["POST"]),
            Route("/orders/{order_id:uuid}", route("get_order")),
        ]
    return Starlette(routes=routes, lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--service", choices=["users", "orders"], required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database-url", required=True, help="libpq URL of the service's database")
    parser.add_argument("--jwt-issuer", required=True)
    parser.add_argument("--jwt-audience", required=True)
    args = parser.parse_args()
    tokens = Tokens(os.environ["JWT_PUBLIC_KEYS"], issuer=args.jwt_issuer, audience=args.jwt_audience)
    uvicorn.run(
        create_app(args.service, args.database_url, tokens),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
