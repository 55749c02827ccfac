"""What the SMTP sink (bench.sink) recorded, read incrementally from its record file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Mail:
    received_at: float  # wall clock (time.time()) of the sink
    message_id: str
    order_id: str | None


@dataclass
class Mailbox:
    path: Path
    mails: list[Mail] = field(default_factory=list)
    #: (time, open connections after the event), one per connection opened or closed
    connections: list[tuple[float, int]] = field(default_factory=list)
    _offset: int = 0
    _partial: bytes = b""
    _open: int = 0

    def refresh(self) -> Mailbox:
        with self.path.open("rb") as record:
            record.seek(self._offset)
            chunk = record.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            entry = json.loads(line)
            if entry["kind"] == "mail":
                self.mails.append(Mail(entry["t"], entry["message_id"], entry["order_id"]))
            elif entry["kind"] in ("open", "close"):
                self._open += 1 if entry["kind"] == "open" else -1
                self.connections.append((entry["t"], self._open))
        return self

    def mails_since(self, since: float) -> list[Mail]:
        return [mail for mail in self.refresh().mails if mail.received_at >= since]

    def most_connections(self, since: float, until: float) -> int:
        """The most connections open at once between `since` and `until`."""
        self.refresh()
        before = [count for at, count in self.connections if at < since]
        during = [count for at, count in self.connections if since <= at <= until]
        return max([before[-1] if before else 0, *during])
