"""Dead letters as an operator reads them: `dlq list`, `show`, `replay` and `purge` as plain text.

Any body and header can sit in the dead-letter queue, so every value printed here has the
control characters a terminal would act on (an escape sequence) shown as `\\xNN`.
"""

from __future__ import annotations

import json
import re

from fastmicro.dlq import BODY_PREVIEW_BYTES, DeadLetter, Listing, Outcome, jsonable

_REASON_WIDTH = 60
_NAME_WIDTH = 80
# C0 and C1 controls and DEL, but for newline and tab: a terminal would act on them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def render_listing(listing: Listing) -> str:
    """`dlq list` as aligned text: one line per message, then the count and the queue depth."""
    rows = [
        (
            str(letter.position),
            _printable(letter.message_id or "-"),
            _truncate(letter.event_type or "-", _NAME_WIDTH),
            _truncate(letter.routing_key or "-", _NAME_WIDTH),
            "-" if letter.attempts is None else str(letter.attempts),
            _truncate(letter.reason or "-", _REASON_WIDTH),
            letter.dead_at.isoformat(timespec="seconds") if letter.dead_at else "-",
        )
        for letter in listing.letters
    ]
    if rows:
        rows.insert(0, ("#", "MESSAGE ID", "TYPE", "ROUTING KEY", "ATTEMPTS", "REASON", "DEAD AT"))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))] if rows else []
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.append(f"{len(listing.letters)} dead letter(s) listed; {listing.queue} holds {listing.depth}")
    return "\n".join(lines)


def render_letter(letter: DeadLetter, *, copies: int = 1) -> str:
    """`dlq show` as text: the properties, every header, and the body (pretty when it is JSON)."""
    fields = [
        ("message id", letter.message_id),
        ("position", f"{letter.position}" + (f" ({copies} copies in the queue)" if copies > 1 else "")),
        ("type", letter.event_type),
        ("routing key", letter.routing_key),
        ("attempts", letter.attempts),
        ("reason", letter.reason),
        ("error", letter.error),
        ("dead at", letter.dead_at.isoformat() if letter.dead_at else None),
        ("replayed", letter.replayed),
        ("correlation id", letter.correlation_id),
        ("content type", letter.content_type),
        ("timestamp", letter.timestamp.isoformat() if letter.timestamp else None),
        ("body size", f"{len(letter.body)} bytes"),
    ]
    width = max(len(name) for name, _ in fields) + 1
    lines = [f"{name + ':':<{width}} {'-' if value is None else _printable(str(value))}" for name, value in fields]
    lines.append("headers:")
    for key, value in letter.headers.items():
        lines.append(_printable(f"  {key}: {json.dumps(jsonable(value), ensure_ascii=False)}"))
    body = letter.body_json
    lines.append("body:")
    lines.append(_printable(letter.body_text if body is None else json.dumps(body, indent=2, ensure_ascii=False)))
    if letter.body_truncated:
        size = len(letter.body)
        lines.append(f"… the first {BODY_PREVIEW_BYTES} bytes of {size} (all of them: show --save-body FILE)")
    return "\n".join(lines)


def render_outcome(outcome: Outcome, *, verb: str, past: str, to: str | None = None) -> str:
    """`dlq replay` / `dlq purge` as text: what was done to which message, and what was not found."""
    prefix = f"would {verb}" if outcome.dry_run else past
    lines = [f"{prefix} {len(outcome.done)} dead letter(s) from {outcome.queue}" + (f" to {to}" if to else "")]
    lines += [
        _printable(f"  {letter.message_id or '-'}  {letter.event_type or '-'}  {letter.routing_key or '-'}")
        for letter in outcome.done
    ]
    lines += [f"not found: {message_id}" for message_id in outcome.missing]
    return "\n".join(lines)


def _truncate(text: str, width: int) -> str:
    text = _printable(" ".join(text.split()))  # a reason can hold newlines (pydantic's messages)
    return text if len(text) <= width else text[: width - 1] + "…"


def _printable(text: str) -> str:
    """`text` with the control characters a terminal would act on (an escape sequence) shown as `\\xNN`."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
