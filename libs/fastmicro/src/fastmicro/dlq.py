"""Dead letters of a service's consumer: list, show, replay and purge `<service>.events.dead`.

`python -m <svc> dlq ...` (cli.py) is the operator's way in; the operations live here.

How the queue is read. AMQP has no peek: a message is seen only by taking it. Every operation
passive-declares the dead queue, `basic.get`s up to its depth at the start (the larger of the
declare's count and the first get's) without acking them, acts on the ones it selected (replay:
publish a copy to `<service>.events`, wait for the broker's confirm, only then ack the dead
copy; purge: ack), and at the end nacks the others with requeue and closes its channel. Two
rules keep a message from being read twice: nothing is requeued before the end (a message
requeued mid-scan goes back ahead of the read position and would be got again), and the scan
stops at the starting depth (what arrives meanwhile, such as a replayed message that failed
again, is left for the next run).

Ordering, as verified against RabbitMQ 3.10.8 (the tests run on both queue types). A classic
queue puts a requeued message back at its original position, whatever order the nacks come in,
and the same holds when the channel or connection closes with it unacked. A quorum queue (the
default, `QUEUE_TYPE`) serves returned messages ahead of the rest, in the order they were
returned: the scan nacks them in queue order, so the queue ends as it began. Either way `list` run
twice shows the same queue, and messages that arrived during a scan stay behind the older ones.
Positions are those at the time of the scan; removing a message moves up the ones behind it. On
a quorum queue, messages a crashed scan held (its connection dropped) come back in an order the
broker does not promise.

Delivery counts. A quorum queue counts every return as a delivery (the `x-delivery-count` header):
a scan spends one on each message it reads. The dead queue is declared with no delivery limit
(fastmicro.queues; RabbitMQ 4's default of 20 is turned off explicitly), so reading it any number
of times never moves or drops a message; a replayed copy starts from none (fastmicro.letters).

Any body at all can sit in the queue (the consumer dead-letters what it cannot read), so none is
trusted here either: a body is parsed as JSON only up to `BODY_PREVIEW_BYTES` and with a nesting
limit (pydantic-core's parser refuses past 200 levels, where the standard library's would raise
RecursionError); `show` prints at most that many bytes of it, invalid UTF-8 as `\\xNN` escapes and
control characters escaped, so no body can flood or drive the operator's terminal.

Limits: every message of a scan is held in memory, and is invisible to other readers of the dead
queue while held (two operators listing at once each see part of it). Crash safety: whatever is
unacked returns to the queue when the connection drops; a crash between a replay's confirm and
its ack leaves the dead copy in place, and replaying it again gives a duplicate that the inbox
absorbs (same message id).
"""

from __future__ import annotations

import codecs
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import aio_pika
import aiormq
import structlog
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage, AbstractQueue
from pydantic_core import from_json

from fastmicro.consumer import EventConsumer
from fastmicro.letters import (
    ATTEMPT_HEADER,
    DEAD_AT_HEADER,
    ERROR_HEADER,
    REASON_HEADER,
    REPLAYED_HEADER,
    ROUTING_KEY_HEADER,
    message_copy,
)
from fastmicro.messaging import Broker

log = structlog.get_logger(__name__)

#: How much of a body `show` prints, and the largest body it parses as JSON.
BODY_PREVIEW_BYTES = 64 * 1024

_PUBLISH_TIMEOUT = 10.0


class QueueMissing(Exception):
    """The broker has no such queue: wrong namespace or vhost, or `topology` was never run."""

    def __init__(self, queue: str) -> None:
        super().__init__(f"the broker has no queue {queue!r} (wrong AMQP_NAMESPACE, or `topology` never ran?)")
        self.queue = queue


class ReplayFailed(Exception):
    """The broker did not take the replayed copy: the dead one is left in place."""


@dataclass(frozen=True)
class DeadLetterQueues:
    """The two queues the operations need: where a message is replayed to, and the dead queue."""

    service_queue: str
    dead_queue: str

    @classmethod
    def of(cls, consumer: EventConsumer[Any]) -> DeadLetterQueues:
        return cls(consumer.queue_name, consumer.dead_queue_name)


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead queue as read, with what the consumer recorded about its death."""

    position: int  # 1-based, in the queue at the time of the scan
    message_id: str | None
    event_type: str | None
    routing_key: str | None
    attempts: int | None
    reason: str | None
    error: str | None
    dead_at: datetime | None
    replayed: int
    correlation_id: str | None
    content_type: str | None
    timestamp: datetime | None
    headers: Mapping[str, Any] = field(repr=False)
    body: bytes = field(repr=False)

    @classmethod
    def from_message(cls, message: AbstractIncomingMessage, position: int) -> DeadLetter:
        headers = dict(message.headers or {})
        parsed = _parse_json(message.body)
        body_type = parsed.get("type") if isinstance(parsed, dict) else None
        return cls(
            position=position,
            message_id=message.message_id,
            # A foreign or raw publisher may not set the AMQP type: the envelope may still say it.
            event_type=message.type or (body_type if isinstance(body_type, str) else None),
            routing_key=_text(headers.get(ROUTING_KEY_HEADER)) or message.routing_key or None,
            attempts=_int(headers.get(ATTEMPT_HEADER)),
            reason=_text(headers.get(REASON_HEADER)) or _broker_reason(headers),
            error=_text(headers.get(ERROR_HEADER)),
            dead_at=_datetime(headers.get(DEAD_AT_HEADER)),
            replayed=_int(headers.get(REPLAYED_HEADER)) or 0,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            timestamp=message.timestamp,
            headers=headers,
            body=message.body,
        )

    @property
    def body_json(self) -> Any:
        """The body parsed as JSON; None when it is not JSON, is nested too deep, or is over the preview size."""
        return _parse_json(self.body)

    @property
    def body_truncated(self) -> bool:
        return len(self.body) > BODY_PREVIEW_BYTES

    @property
    def body_text(self) -> str:
        """At most `BODY_PREVIEW_BYTES` of the body as text; bytes that are not UTF-8 as `\\xNN`."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="backslashreplace")
        # Not final when cut: a character split by the cut is left out rather than shown as bytes.
        return decoder.decode(self.body[:BODY_PREVIEW_BYTES], final=not self.body_truncated)

    def summary(self) -> dict[str, Any]:
        """What `list --json` prints per message."""
        return {
            "position": self.position,
            "message_id": self.message_id,
            "type": self.event_type,
            "routing_key": self.routing_key,
            "attempts": self.attempts,
            "reason": self.reason,
            "error": self.error,
            "dead_at": jsonable(self.dead_at),
            "replayed": self.replayed,
        }

    def detail(self) -> dict[str, Any]:
        """What `show --json` prints: everything, the headers and the body included."""
        return {
            **self.summary(),
            "correlation_id": self.correlation_id,
            "content_type": self.content_type,
            "timestamp": jsonable(self.timestamp),
            "headers": jsonable(dict(self.headers)),
            "body": self.body_text,
            "body_bytes": len(self.body),
            "body_truncated": self.body_truncated,
            "body_json": self.body_json,
        }


@dataclass(frozen=True)
class Listing:
    queue: str
    depth: int  # ready messages when the scan started
    letters: list[DeadLetter]


@dataclass(frozen=True)
class Outcome:
    """What a replay or purge did (or, dry, would do), and the requested ids it did not find."""

    queue: str
    depth: int
    done: list[DeadLetter]
    missing: list[str]
    dry_run: bool = False


# Called for each message got; True when it took the message off the queue (acked it).
_Action = Callable[[AbstractChannel, AbstractIncomingMessage, DeadLetter], Awaitable[bool]]


async def list_dead_letters(broker: Broker, queues: DeadLetterQueues, *, limit: int | None = None) -> Listing:
    """The first `limit` (default all) dead letters, in queue order; the queue is left as it was."""
    depth, letters = await _scan(broker, queues.dead_queue, _keep, limit=limit)
    return Listing(queues.dead_queue, depth, letters)


async def find_dead_letters(broker: Broker, queues: DeadLetterQueues, message_id: str) -> list[DeadLetter]:
    """Every copy of `message_id` in the dead queue (usually one), which is left as it was."""
    _, letters = await _scan(broker, queues.dead_queue, _keep)
    return [letter for letter in letters if letter.message_id == message_id]


async def replay_dead_letters(
    broker: Broker, queues: DeadLetterQueues, message_ids: Collection[str] | None, *, dry_run: bool = False
) -> Outcome:
    """Move the selected dead letters (`None`: all of them) back to the service's queue.

    Each copy goes through the default exchange with publisher confirms, its attempt count reset
    and the reason of its death dropped; the dead one is acked only once the broker confirmed it.
    """
    wanted = None if message_ids is None else set(message_ids)
    done: list[DeadLetter] = []

    async def replay(channel: AbstractChannel, message: AbstractIncomingMessage, letter: DeadLetter) -> bool:
        if wanted is not None and letter.message_id not in wanted:
            return False
        if dry_run:
            done.append(letter)
            return False
        confirm = await channel.default_exchange.publish(
            replay_copy(message), routing_key=queues.service_queue, mandatory=True, timeout=_PUBLISH_TIMEOUT
        )
        if not isinstance(confirm, aiormq.spec.Basic.Ack):  # returned unroutable: the queue went away mid-scan
            raise ReplayFailed(f"{queues.service_queue} did not take message {letter.message_id}")
        await message.ack()
        done.append(letter)
        log.info(
            "dead_letter_replayed",
            message_id=letter.message_id,
            event_type=letter.event_type,
            to=queues.service_queue,
            replayed=letter.replayed + 1,
        )
        return True

    depth, _ = await _scan(broker, queues.dead_queue, replay, also_needs=queues.service_queue)
    return Outcome(queues.dead_queue, depth, done, _missing(wanted, done), dry_run)


async def purge_dead_letters(broker: Broker, queues: DeadLetterQueues, message_ids: Collection[str] | None) -> Outcome:
    """Delete (ack) the selected dead letters (`None`: all those there when the scan started)."""
    wanted = None if message_ids is None else set(message_ids)
    done: list[DeadLetter] = []

    async def purge(_: AbstractChannel, message: AbstractIncomingMessage, letter: DeadLetter) -> bool:
        if wanted is not None and letter.message_id not in wanted:
            return False
        await message.ack()
        done.append(letter)
        log.warning(
            "dead_letter_purged", message_id=letter.message_id, event_type=letter.event_type, reason=letter.reason
        )
        return True

    depth, _ = await _scan(broker, queues.dead_queue, purge)
    return Outcome(queues.dead_queue, depth, done, _missing(wanted, done))


def replay_copy(message: AbstractIncomingMessage) -> aio_pika.Message:
    """The message as the consumer should see it again: a first attempt, marked as replayed."""
    replayed = (_int((message.headers or {}).get(REPLAYED_HEADER)) or 0) + 1
    return message_copy(message, {ATTEMPT_HEADER: 0, REPLAYED_HEADER: replayed})


async def _keep(_: AbstractChannel, __: AbstractIncomingMessage, ___: DeadLetter) -> bool:
    return False


async def _scan(
    broker: Broker, queue_name: str, act: _Action, *, limit: int | None = None, also_needs: str | None = None
) -> tuple[int, list[DeadLetter]]:
    """Get up to the starting depth (or `limit`) of messages, `act` on each, requeue the rest in order.

    Returns the starting depth and every message read.
    """
    channel = await broker.channel(publisher_confirms=True)
    try:
        if also_needs is not None:
            await _declare_passive(channel, also_needs)
        queue = await _declare_passive(channel, queue_name)
        declared = queue.declaration_result.message_count or 0
        depth = 0
        letters: list[DeadLetter] = []
        held: list[AbstractIncomingMessage] = []
        try:
            position = 0
            while limit is None or position < limit:
                message = await queue.get(no_ack=False, fail=False)
                if message is None:  # empty, or someone else took the rest meanwhile
                    break
                position += 1
                if position == 1:
                    # The larger of the declare's count and the first get's: on a quorum queue each
                    # can lag behind the other, the declare's behind returns just made, the get's
                    # behind messages just dead-lettered (both seen on 3.10 under load).
                    depth = max(declared, 1 + (message.message_count or 0))
                letter = DeadLetter.from_message(message, position)
                letters.append(letter)
                if not await act(channel, message, letter):
                    held.append(message)
                if position >= depth:
                    break
        finally:
            # In order: a classic queue puts them back at their old positions either way, a quorum
            # queue serves them in the order they come back. Should a nack fail, the channel's close
            # below returns the rest.
            for message in held:
                if channel.is_closed:
                    break
                await message.nack(requeue=True)
        log.info("dead_letters_scanned", queue=queue_name, depth=depth, read=len(letters), requeued=len(held))
        return depth, letters
    finally:
        if not channel.is_closed:
            await channel.close()


async def _declare_passive(channel: AbstractChannel, name: str) -> AbstractQueue:
    try:
        return await channel.declare_queue(name, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity as error:
        raise QueueMissing(name) from error


def _broker_reason(headers: Mapping[str, Any]) -> str | None:
    """Why the broker itself dead-lettered it (a quorum queue's delivery limit), from `x-first-death-reason`."""
    reason = _text(headers.get("x-first-death-reason"))
    return f"broker: {reason}" if reason else None


def _missing(wanted: set[str] | None, done: list[DeadLetter]) -> list[str]:
    if wanted is None:
        return []
    return sorted(wanted - {letter.message_id for letter in done if letter.message_id is not None})


def _parse_json(body: bytes) -> Any:
    if len(body) > BODY_PREVIEW_BYTES:
        return None
    try:
        # Not json.loads: its recursion raises RecursionError on deep nesting; this parser refuses it.
        return from_json(body, allow_inf_nan=False)
    except ValueError:  # not JSON, not UTF-8, or nested too deep
        return None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _datetime(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str | bytes):
        try:
            return datetime.fromisoformat(_text(value) or "")
        except ValueError:
            return None
    return None


def jsonable(value: Any) -> Any:
    """AMQP header values (bytes, timestamps, decimals, nested tables) as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Decimal):
        return str(value)
    return value
