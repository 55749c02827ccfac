"""`python -m bench.raw.publisher`: the raw twin of the outbox relay's publishing.

aio-pika publishes `--count` OrderPlaced envelopes (the relay's payloads and AMQP properties)
to the events exchange on a confirming channel, `--in-flight` unconfirmed at most. The
payloads are built before `raw_ready`; the publishing starts on SIGCONT (bench.raw.job).
"""

from __future__ import annotations

import argparse
import asyncio
import uuid

import aio_pika
import orjson
import uvloop

from bench.raw.envelopes import order_placed
from bench.raw.job import say, started_event, stop_event

ITEMS = [
    {"sku": "BENCH-BOOK", "quantity": 2, "unit_price": 1250},
    {"sku": "BENCH-PEN", "quantity": 1, "unit_price": 499},
]


def message() -> aio_pika.Message:
    envelope = order_placed(
        order_id=uuid.uuid4(),
        user_id=uuid.uuid4(),
        items=ITEMS,
        total=2999,
        currency="EUR",
        correlation_id=str(uuid.uuid4()),
    )
    return aio_pika.Message(
        orjson.dumps(envelope, option=orjson.OPT_UTC_Z),
        content_type="application/json",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        message_id=envelope["id"],
        type="OrderPlaced",
        correlation_id=envelope["correlation_id"],
        timestamp=envelope["occurred_at"],
    )


async def run(args: argparse.Namespace) -> None:
    stop = stop_event()
    started = started_event()
    messages = [message() for _ in range(args.count)]
    connection = await aio_pika.connect(args.amqp_url)
    try:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange(args.exchange)
        say("raw_ready", messages=len(messages))
        await started.wait()
        window = asyncio.Semaphore(args.in_flight)

        async def publish(one: aio_pika.Message) -> None:
            async with window:
                await exchange.publish(one, "orders.OrderPlaced", mandatory=False, timeout=10)

        await asyncio.gather(*(publish(one) for one in messages))
        say("raw_done", published=len(messages))
        await stop.wait()
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--exchange", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--in-flight", type=int, default=100)
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
