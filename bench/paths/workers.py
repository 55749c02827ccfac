"""relay, consumer, email_sender: a batch of work handed to a paused worker, timed from its resumption to the end.

Each measurement starts the worker (the project's, or the raw twin), waits until it is ready,
pauses it (SIGSTOP), prepares the work (outbox rows, queued events, pending notifications),
then resumes it (SIGCONT) and polls the database (or the raw job's log) until the work is
done. Its CPU time (utime + stime from /proc) is read at resumption and at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import asyncpg

from bench import results, seed
from bench.broker import queues
from bench.mailbox import Mailbox
from bench.measure import CpuMeter, Sample, machine_share, own_cpu_seconds, per_op_ms
from bench.processes import LogWatch, Process, poll_until
from bench.report import say
from bench.stack import Stack
from fastmicro.messaging import Broker, Publisher, Topology
from fastmicro.outbox import NOTIFY_CHANNEL as OUTBOX_CHANNEL
from fastmicro.settings import ServiceSettings
from notifications.repository import PENDING_CHANNEL
from notifications.settings import NotificationsSettings

Check = Callable[[], Awaitable[bool]]


@contextlib.asynccontextmanager
async def database(stack: Stack, service: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(stack.setup.dsn(service))
    try:
        yield connection
    finally:
        await connection.close()


async def timed(
    process: Process, ops: int, prepare: Callable[[], Awaitable[None]], done: Check, *, within: float
) -> Sample:
    """Pause `process`, `prepare()`, resume it, and time it until `done()`."""
    process.pause()
    await prepare()
    meter = CpuMeter([process]).start()
    own = own_cpu_seconds()
    process.resume()
    await poll_until(done, what=f"{process.name} to finish {ops} operations", within=within, interval=0.01,
                     watch=[process])  # fmt: skip
    cpu, wall = meter.stop()
    return Sample(
        rate=ops / wall,
        ops=ops,
        seconds=wall,
        cpu_ms_per_op=per_op_ms(cpu, ops),
        loadgen_cpu_share=machine_share(own_cpu_seconds() - own, wall),
    )


async def listening(connection: asyncpg.Connection, channel: str, process: Process) -> None:
    """Wait until a session of the database LISTENs on `channel` (the worker's wake-up)."""

    async def check() -> bool:
        count = await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query ILIKE $1",
            f"LISTEN%{channel}%",
        )
        return bool(count)

    await poll_until(check, what=f"{process.name} to LISTEN on {channel}", within=30, interval=0.02, watch=[process])


def logged(watch: LogWatch, event: str) -> Check:
    async def check() -> bool:
        return watch.seen(event)

    return check


def _log(path: str, number: int, rounds: int, side: str, sample: Sample, *, unit: str) -> None:
    say(path, f"round {number}/{rounds} {side:<7} {sample.rate:8.1f} {unit}  in {sample.seconds:.2f} s"
        f"  cpu {sample.cpu_ms_per_op or 0:.3f} ms/op")  # fmt: skip


async def relay(stack: Stack) -> results.Entry:
    """5,000 outbox rows, then until `python -m orders worker` has published them all with confirms;
    raw: aio-pika publishing the same payloads with confirms, 100 in flight."""
    setup, profile = stack.setup, stack.setup.profile
    users = seed.make_users(profile.users, "relay")
    count = profile.relay_rows
    samples: dict[str, list[Sample]] = {"project": [], "raw": []}
    async with database(stack, "orders") as connection, queues(setup) as broker:

        async def unpublished_none() -> bool:
            return bool(await connection.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL") == 0)

        async def insert_rows() -> None:
            async with connection.transaction():  # one commit: one NOTIFY
                await seed.insert_outbox(connection, seed.order_placed(users, count))

        async def nothing() -> None:
            return None

        for number in range(1, profile.rounds + 1):
            worker = await stack.worker("orders")
            try:
                await listening(connection, OUTBOX_CHANNEL, worker)
                sample = await timed(worker, count, insert_rows, unpublished_none, within=profile.batch_timeout)
            finally:
                await stack.stop(worker)
            samples["project"].append(sample)
            _log("relay", number, profile.rounds, "project", sample, unit="msg/s")
            await broker.purge(setup.queue("notifications"))

            job = await stack.raw_job(
                "publisher",
                "--amqp-url", setup.amqp_url,
                "--exchange", Topology(setup.amqp_namespace).events_exchange,
                "--count", str(count),
                "--in-flight", "100",
            )  # fmt: skip
            try:
                watch = LogWatch(job)
                sample = await timed(job, count, nothing, logged(watch, "raw_done"), within=profile.batch_timeout)
            finally:
                await stack.stop(job)
            samples["raw"].append(sample)
            _log("relay", number, profile.rounds, "raw", sample, unit="msg/s")
            await broker.purge(setup.queue("notifications"))
    return results.compared("relay", "messages/s", samples["project"], samples["raw"], rows=count)


async def consumer(stack: Stack) -> results.Entry:
    """5,000 OrderPlaced queued, then until the notifications consumer has handled them all (a pending
    notification each); raw: aio-pika consume + one INSERT per message with asyncpg."""
    setup, profile = stack.setup, stack.setup.profile
    users = seed.make_users(profile.users, "consumer")
    await seed.insert_contacts(setup.dsn("notifications"), users)
    count = profile.consumer_events
    queue = setup.queue("notifications")
    prefetch = str(ServiceSettings.model_fields["consumer_prefetch"].default)
    samples: dict[str, list[Sample]] = {"project": [], "raw": []}
    async with database(stack, "notifications") as connection, queues(setup) as broker:

        async def all_handled() -> bool:
            return bool(await connection.fetchval("SELECT count(*) FROM notifications") >= count)

        async def queue_events() -> None:
            await publish(stack, seed.order_placed(users, count))

        async def subscribed(process: Process) -> None:
            async def check() -> bool:
                return await broker.consumers(queue) >= 1

            await poll_until(
                check, what=f"{process.name} to consume {queue}", within=30, interval=0.02, watch=[process]
            )

        for number in range(1, profile.rounds + 1):
            for side in ("project", "raw"):
                await connection.execute("TRUNCATE notifications, inbox")
                await broker.purge(queue)
                if side == "project":
                    process = await stack.worker("notifications", "EventConsumer")
                else:
                    process = await stack.raw_job(
                        "consumer", "--amqp-url", setup.amqp_url, "--queue", queue,
                        "--database-url", setup.dsn("notifications"), "--prefetch", prefetch,
                    )  # fmt: skip
                try:
                    await subscribed(process)
                    sample = await timed(process, count, queue_events, all_handled, within=profile.batch_timeout)
                finally:
                    await stack.stop(process)
                samples[side].append(sample)
                _log("consumer", number, profile.rounds, side, sample, unit="msg/s")
        await connection.execute("TRUNCATE notifications, inbox")
    return results.compared(
        "consumer", "messages/s", samples["project"], samples["raw"], events=count, prefetch=int(prefetch)
    )


async def email_sender(stack: Stack, mailbox: Mailbox) -> results.Entry:
    """N pending notifications, then until the EmailSender has sent them all into the sink (and marked them
    sent); raw: an aiosmtplib loop with as many connections as the project's sender held at once."""
    setup, profile = stack.setup, stack.setup.profile
    users = seed.make_users(profile.users, "sender")
    count = profile.sender_mails
    mail_from = str(NotificationsSettings.model_fields["mail_from"].default)
    samples: dict[str, list[Sample]] = {"project": [], "raw": []}
    connections = 1
    async with database(stack, "notifications") as connection:

        async def all_sent() -> bool:
            return bool(await connection.fetchval("SELECT count(*) FROM notifications WHERE status = 'sent'") >= count)

        async def pending_rows() -> None:
            await seed.insert_pending_notifications(connection, users, count)

        for number in range(1, profile.rounds + 1):
            for side in ("project", "raw"):
                await connection.execute("TRUNCATE notifications")
                if side == "project":
                    process = await stack.worker("notifications", "EmailSender")
                    await listening(connection, PENDING_CHANNEL, process)
                else:
                    process = await stack.raw_job(
                        "mailer", "--database-url", setup.dsn("notifications"), "--smtp-port", str(setup.smtp_port),
                        "--count", str(count), "--connections", str(connections), "--sender", mail_from,
                    )  # fmt: skip
                try:
                    began = time.time()
                    sample = await timed(process, count, pending_rows, all_sent, within=profile.batch_timeout)
                    held = mailbox.most_connections(began, time.time())
                finally:
                    await stack.stop(process)
                if side == "project":
                    connections = max(1, held)
                samples[side].append(Sample(**{**sample.__dict__, "detail": {"smtp_connections": held}}))
                _log("email_sender", number, profile.rounds, side, sample, unit="mails/s")
        await connection.execute("TRUNCATE notifications")
    return results.compared(
        "email_sender", "mails/s", samples["project"], samples["raw"], mails=count, smtp_connections=connections
    )


async def publish(stack: Stack, envelopes: Sequence[object]) -> None:
    """Publish envelopes as the project's relay would (the kernel's Publisher, with confirms)."""
    setup = stack.setup
    broker = Broker(setup.amqp_url, Topology(setup.amqp_namespace))
    publisher = Publisher(broker)
    try:
        for start in range(0, len(envelopes), 500):
            await asyncio.gather(*(publisher.publish(e) for e in envelopes[start : start + 500]))  # type: ignore[arg-type]
    finally:
        await broker.close()
