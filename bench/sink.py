"""`python -m bench.sink --port P --record FILE`: the SMTP server every path sends into, in a process of its own.

It accepts every message and appends one JSON line per event to FILE as it happens: `open` and
`close` for each connection (so the bench knows how many a sender holds at once) and `mail`
with the receipt time (the wall clock, comparable with the services' timestamps), the
Message-ID, and for an order_placed mail the order id its body names.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import threading
import time
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import IO, Any

import uvloop
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP

#: notifications.messages.order_placed: "thank you for your order <uuid>:"
ORDER_ID = re.compile(rb"your order ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}):")


class Recorder:
    """aiosmtpd handler that writes what it sees, one flushed JSON line at a time."""

    def __init__(self, output: IO[str]) -> None:
        self._output = output
        self._lock = threading.Lock()

    def record(self, kind: str, **fields: Any) -> None:
        line = json.dumps({"kind": kind, "t": time.time(), **fields})
        with self._lock:
            self._output.write(line + "\n")
            self._output.flush()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's name
        content: bytes = envelope.content
        match = ORDER_ID.search(content)
        headers = message_from_bytes(content.partition(b"\r\n\r\n")[0], policy=default_policy)
        self.record(
            "mail",
            message_id=str(headers["Message-ID"] or ""),
            order_id=match.group(1).decode() if match else None,
            to=list(envelope.rcpt_tos),
        )
        return "250 OK"


class CountingSMTP(SMTP):
    def __init__(self, handler: Recorder, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._recorder = handler

    def connection_made(self, transport: Any) -> None:
        self._recorder.record("open")
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._recorder.record("close")
        super().connection_lost(error)


class SinkController(Controller):
    def factory(self) -> SMTP:
        return CountingSMTP(self.handler, **self.SMTP_kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--record", type=Path, required=True)
    args = parser.parse_args()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with args.record.open("a", encoding="utf-8") as output:
        recorder = Recorder(output)
        controller = SinkController(
            recorder, hostname="127.0.0.1", port=args.port, loop=uvloop.new_event_loop(), data_size_limit=1 << 20
        )
        controller.start()
        recorder.record("ready", port=args.port)
        stop.wait()
        controller.stop()


if __name__ == "__main__":
    main()
