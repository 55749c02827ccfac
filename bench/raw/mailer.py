"""`python -m bench.raw.mailer`: the raw twin of the email sender.

On SIGCONT: one query reads the pending notifications, `--connections` aiosmtplib connections
send them (each taking the next one in turn), and one UPDATE per connection marks its sent
rows `sent` at the end. The same messages as the project's (From, To, Subject, Date,
Message-ID, the body), into the same SMTP sink.
"""

from __future__ import annotations

import argparse
import asyncio
from collections import deque
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import aiosmtplib
import asyncpg
import uvloop

from bench.raw.job import say, started_event, stop_event

SELECT_PENDING = """
SELECT id, recipient, subject, body FROM notifications
WHERE status = 'pending' AND next_attempt_at <= now() ORDER BY next_attempt_at LIMIT $1
"""
MARK_SENT = "UPDATE notifications SET status = 'sent', attempts = attempts + 1, sent_at = $2 WHERE id = ANY($1::uuid[])"


def compose(row: Any, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = row["recipient"]
    message["Subject"] = row["subject"]
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = f"<{row['id']}@notifications.fastmicro>"
    message.set_content(row["body"])
    return message


async def send_all(args: argparse.Namespace, pool: asyncpg.Pool) -> int:
    rows = deque(await pool.fetch(SELECT_PENDING, args.count))

    async def connection() -> int:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=args.smtp_port, timeout=10)
        await smtp.connect()
        sent = []
        try:
            while rows:
                row = rows.popleft()
                await smtp.send_message(compose(row, args.sender))
                sent.append(row["id"])
        finally:
            await smtp.quit()
        await pool.execute(MARK_SENT, sent, datetime.now(UTC))
        return len(sent)

    return sum(await asyncio.gather(*(connection() for _ in range(args.connections))))


async def run(args: argparse.Namespace) -> None:
    stop = stop_event()
    started = started_event()
    pool = await asyncpg.create_pool(args.database_url, min_size=2, max_size=max(2, args.connections))
    try:
        say("raw_ready", connections=args.connections)
        await started.wait()
        say("raw_done", sent=await send_all(args, pool))
        await stop.wait()
    finally:
        await pool.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--sender", default="fastmicro <no-reply@fastmicro.local>")
    uvloop.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
