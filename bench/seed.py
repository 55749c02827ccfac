"""The rows and events the paths start from, written the way the project writes them.

Outbox rows and events are built with the kernel's own `Envelope` and `outbox_rows`, and
notification texts with notifications.messages, so what the services read is what they
would have written themselves.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import orjson

from fastmicro.events import Envelope
from fastmicro.outbox import outbox_rows
from fastmicro_contracts.money import Money
from fastmicro_contracts.orders import OrderLine, OrderPlaced
from fastmicro_contracts.users import UserCreated
from notifications import messages

#: Every order the bench places: two lines.
ORDER_BODY = {
    "items": [
        {"sku": "BENCH-BOOK", "quantity": 2, "unit_price": 1250},
        {"sku": "BENCH-PEN", "quantity": 1, "unit_price": 499},
    ],
    "currency": "EUR",
}
ORDER_LINES = tuple(OrderLine(**item) for item in ORDER_BODY["items"])  # type: ignore[arg-type]
ORDER_TOTAL = Money.of_minor_units(
    sum(line.quantity * line.unit_price for line in ORDER_LINES), str(ORDER_BODY["currency"])
)
#: Not a real argon2 hash: the bench never logs in with a password.
PASSWORD_HASH = "$argon2id$v=19$m=65536,t=3,p=4$YmVuY2g$bm90LWEtcmVhbC1oYXNo"  # noqa: S105 - not a secret


@dataclass(frozen=True)
class User:
    id: uuid.UUID
    email: str
    name: str


def make_users(count: int, tag: str) -> list[User]:
    users = []
    for number in range(count):
        user_id = uuid.uuid4()
        users.append(User(user_id, f"{tag}-{number}-{user_id.hex[:8]}@bench.example", f"Bench {tag} {number}"))
    return users


async def insert_users(dsn: str, users: Sequence[User], *, announce: bool) -> None:
    """Users rows; with `announce`, a UserCreated outbox row each too, in the same transaction (as POST /users does)."""
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        async with connection.transaction():
            await connection.executemany(
                "INSERT INTO users (id, email, name, password_hash, created_at, updated_at)"
                " VALUES ($1, $2, $3, $4, $5, $5)",
                [(user.id, user.email, user.name, PASSWORD_HASH, now) for user in users],
            )
            if announce:
                events = [Envelope.wrap(UserCreated(user_id=u.id, email=u.email, name=u.name)) for u in users]
                await insert_outbox(connection, events)
    finally:
        await connection.close()


async def insert_outbox(connection: asyncpg.Connection, envelopes: Sequence[Envelope]) -> None:
    await connection.executemany(
        "INSERT INTO outbox (id, routing_key, payload, created_at, attempts) VALUES ($1, $2, $3::jsonb, $4, 0)",
        [
            (row["id"], row["routing_key"], orjson.dumps(row["payload"]).decode(), row["created_at"])
            for row in outbox_rows(envelopes)
        ],
    )


def order_placed(users: Sequence[User], count: int) -> list[Envelope]:
    """`count` OrderPlaced envelopes of two lines, for `users` in turn (as POST /orders emits them)."""
    return [
        Envelope.wrap(
            OrderPlaced(
                order_id=uuid.uuid4(),
                user_id=users[number % len(users)].id,
                items=ORDER_LINES,
                total=ORDER_TOTAL,
            )
        )
        for number in range(count)
    ]


async def insert_contacts(dsn: str, users: Sequence[User]) -> None:
    """The notifications service's contacts for `users`, as their UserCreated would leave them."""
    now = datetime.now(UTC)
    connection = await asyncpg.connect(dsn)
    try:
        await connection.executemany(
            "INSERT INTO contacts (user_id, email, name, updated_at) VALUES ($1, $2, $3, $4)",
            [(user.id, user.email, user.name, now) for user in users],
        )
    finally:
        await connection.close()


async def insert_pending_notifications(connection: asyncpg.Connection, users: Sequence[User], count: int) -> None:
    """`count` order_placed notifications due now, as the OrderPlaced handler writes them."""
    now = datetime.now(UTC) - timedelta(seconds=1)
    rows: list[tuple[Any, ...]] = []
    for number in range(count):
        user = users[number % len(users)]
        message = messages.order_placed(user.name, uuid.uuid4(), ORDER_LINES, ORDER_TOTAL)
        rows.append(
            (uuid.uuid4(), user.id, "order_placed", "email", user.email, message.subject, message.body, "pending",
             uuid.uuid4(), 0, now, None, now, None)
        )  # fmt: skip
    await connection.executemany(
        "INSERT INTO notifications (id, user_id, kind, channel, recipient, subject, body, status, event_id, attempts,"
        " next_attempt_at, last_error, created_at, sent_at)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        rows,
    )
