"""`python -m bench.raw.consumer`: the raw twin of the notifications consumer.

aio-pika consumes the notifications queue (same prefetch as the project's consumer); for each
OrderPlaced it runs one INSERT with asyncpg: the pending notification, its recipient and name
read from `contacts` in the same statement, once per event (`ON CONFLICT (event_id) DO
NOTHING`); then acks. It subscribes before `raw_ready`; the bench pauses it, queues the events
and resumes it.
"""

from __future__ import annotations

import argparse
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import asyncpg
import orjson
import uvloop
from aio_pika.abc import AbstractIncomingMessage

from bench.raw.job import say, stop_event

INSERT_NOTIFICATION = """
INSERT INTO notifications (id, user_id, kind, channel, recipient, subject, body, status, event_id, attempts,
                           next_attempt_at, last_error, created_at, sent_at)
SELECT $1, c.user_id, 'order_placed', 'email', c.email, $2::text,
       'Hello ' || c.name || E',\n\nthank you for your order ' || $3::text || E':\n\n' || $4::text, 'pending', $5, 0,
       $6, NULL, $6, NULL
FROM contacts c WHERE c.user_id = $7 AND c.erased_at IS NULL
ON CONFLICT (event_id) DO NOTHING
"""


def money(minor: int, currency: str) -> str:
    return f"{Decimal(minor).scaleb(-2):,.2f} {currency}"


def text_of(data: dict[str, Any]) -> str:
    """OrderPlaced v2's data: the lines in minor units, the total a decimal string with its currency."""
    total = data["total"]
    currency = total["currency"]
    lines = "\n".join(
        f"  {item['quantity']} x {item['sku']} at {money(item['unit_price'], currency)}"
        f" = {money(item['quantity'] * item['unit_price'], currency)}"
        for item in data["items"]
    )
    return f"{lines}\n\nTotal: {Decimal(total['amount']):,.2f} {currency}\n\n-- \nfastmicro\n"


async def run(args: argparse.Namespace) -> None:
    stop = stop_event()
    pool = await asyncpg.create_pool(args.database_url, min_size=10, max_size=10)
    connection = await aio_pika.connect(args.amqp_url)
    try:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        queue = await channel.get_queue(args.queue)

        async def handle(message: AbstractIncomingMessage) -> None:
            envelope = orjson.loads(message.body)
            data = envelope["data"]
            now = datetime.now(UTC)
            await pool.execute(
                INSERT_NOTIFICATION,
                uuid.uuid4(),
                f"Your order {data['order_id'][:8]} is placed",
                data["order_id"],
                text_of(data),
                uuid.UUID(envelope["id"]),
                now,
                uuid.UUID(data["user_id"]),
            )
            await message.ack()

        await queue.consume(handle)
        say("raw_ready", queue=args.queue)
        await stop.wait()
    finally:
        await connection.close()
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--prefetch", type=int, required=True)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
