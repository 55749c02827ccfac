"""The transactional outbox: the table events are written to, and the relay that publishes them.

A unit of work inserts its events into `outbox` in the same transaction as the state they
describe; a statement trigger NOTIFYs the relay at commit. The relay claims unpublished rows
with `FOR UPDATE SKIP LOCKED` (so replicas share the work), publishes each with a broker
confirm, and marks them published in the same transaction as the claim. A crash between
publish and mark re-publishes those rows: consumers are idempotent on the event id.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import structlog
from opentelemetry.trace import Link, SpanKind, get_current_span
from sqlalchemy import DDL, DateTime, Index, Integer, String, event, func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro import tracing
from fastmicro.backoff import Backoff
from fastmicro.db import Base, driver_connection, utcnow
from fastmicro.events import Envelope
from fastmicro.metrics import OUTBOX_BATCH_SIZE, OUTBOX_PUBLISH_FAILURES, OUTBOX_PUBLISHED
from fastmicro.pgnotify import listen

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from asyncpg import Record
    from opentelemetry.trace import Span, Tracer
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

    from fastmicro.messaging import Publisher

log = structlog.get_logger(__name__)

NOTIFY_CHANNEL = "fastmicro_outbox"


class PublishFailed(RuntimeError):
    def __init__(self, failed: int, claimed: int) -> None:
        super().__init__(f"{failed} of {claimed} events were not confirmed by the broker")


class OutboxMessage(Base):
    __tablename__ = "outbox"

    id: Mapped[UUID] = mapped_column(primary_key=True)
    routing_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(String(500))
    #: The trace of the transaction that wrote the row (`traceparent`/`tracestate`), when tracing was on.
    trace_context: Mapped[dict[str, str] | None] = mapped_column(JSONB)

    __table_args__ = (
        # The relay's only query: unpublished rows, oldest first. Kept small by being partial.
        Index("ix_outbox_unpublished", "created_at", postgresql_where=text("published_at IS NULL")),
        # Retention's only query: published rows past their age (fastmicro.retention).
        Index("ix_outbox_published", "published_at", postgresql_where=text("published_at IS NOT NULL")),
    )


outbox_table = OutboxMessage.metadata.tables["outbox"]

_NOTIFY_FUNCTION = DDL(  # type: ignore[no-untyped-call]
    f"""
CREATE OR REPLACE FUNCTION fastmicro_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{NOTIFY_CHANNEL}', '');
    RETURN NULL;
END $$
"""
)
_NOTIFY_TRIGGER = DDL(  # type: ignore[no-untyped-call]
    "CREATE TRIGGER outbox_notify AFTER INSERT ON outbox FOR EACH STATEMENT EXECUTE FUNCTION fastmicro_outbox_notify()"
)
# create_all (tests) and the migrations below produce the same objects.
event.listen(outbox_table, "after_create", _NOTIFY_FUNCTION)
event.listen(outbox_table, "after_create", _NOTIFY_TRIGGER)


def create_outbox(bind: Connection) -> None:
    """For a service's Alembic migration (`create_outbox(op.get_bind())`): table, indexes, NOTIFY trigger.

    It builds the table as it is today, indexes added by later revisions included: those
    revisions create their index only if it does not exist yet.
    """
    outbox_table.create(bind)


def drop_outbox(bind: Connection) -> None:
    outbox_table.drop(bind)
    bind.execute(text("DROP FUNCTION IF EXISTS fastmicro_outbox_notify()"))


def outbox_rows(envelopes: Sequence[Envelope]) -> list[dict[str, Any]]:
    trace_context = tracing.current_carrier()  # None while tracing is off
    return [
        {
            "id": envelope.id,
            "routing_key": envelope.routing_key,
            "payload": envelope.model_dump(mode="json"),
            "created_at": envelope.occurred_at,
            "trace_context": trace_context,
        }
        for envelope in envelopes
    ]


#: The relay's claim: the oldest unpublished rows no other relay holds (served by
#: ix_outbox_unpublished), with the envelope's AMQP properties read out of the stored JSON.
CLAIM_SQL = (
    "SELECT id, routing_key, created_at, payload::text AS body, payload->>'type' AS type,"
    " payload->>'correlation_id' AS correlation_id,"
    " trace_context->>'traceparent' AS traceparent, trace_context->>'tracestate' AS tracestate"
    " FROM outbox WHERE published_at IS NULL ORDER BY created_at LIMIT $1 FOR UPDATE SKIP LOCKED"
)
_MARK_PUBLISHED_SQL = "UPDATE outbox SET published_at = now(), attempts = attempts + 1 WHERE id = ANY($1::uuid[])"
_MARK_FAILED_SQL = "UPDATE outbox SET attempts = attempts + 1, last_error = $2 WHERE id = ANY($1::uuid[])"


def _trace_headers(row: Record) -> dict[str, Any] | None:
    """The AMQP headers that carry the emitting transaction's trace to the consumer (None: it had none)."""
    if row["traceparent"] is None:
        return None
    headers = {"traceparent": row["traceparent"]}
    if row["tracestate"]:
        headers["tracestate"] = row["tracestate"]
    return headers


def _publish_span(tracer: Tracer, rows: Sequence[Record]) -> AbstractContextManager[Span]:
    """The relay's publish span for a batch, linked to the trace of each row that has one."""
    links = [
        Link(get_current_span(tracing.context_from(headers)).get_span_context())
        for row in rows
        if (headers := _trace_headers(row)) is not None
    ]
    return tracer.start_as_current_span(
        "outbox publish",
        kind=SpanKind.PRODUCER,
        links=links,
        attributes={"messaging.system": "rabbitmq", "messaging.batch.message_count": len(rows)},
    )


@dataclass(frozen=True)
class OutboxLag:
    """How far the relay is behind: the age of the oldest unpublished row (0 when none), and their count."""

    seconds: float
    pending: int


async def outbox_lag(engine: AsyncEngine) -> OutboxLag:
    """Measured against the database clock, the one reference every replica shares."""
    async with engine.connect() as conn:
        pending, oldest, now = (
            await conn.execute(
                select(func.count(), func.min(OutboxMessage.created_at), func.now()).where(
                    OutboxMessage.published_at.is_(None)
                )
            )
        ).one()
    # created_at is the application's clock: a row a little "in the future" is no lag at all.
    seconds = max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0
    return OutboxLag(seconds=seconds, pending=int(pending))


class OutboxRelay:
    """Publishes what units of work committed to the outbox. Safe to run in several replicas."""

    def __init__(
        self,
        engine: AsyncEngine,
        publisher: Publisher,
        *,
        batch_size: int = 200,
        poll_interval: float = 2.0,
        max_backoff: float = 10.0,
    ) -> None:
        self._engine = engine
        self._publisher = publisher
        self._batch_size = batch_size
        self._poll_interval = poll_interval
        self._max_backoff = max_backoff
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        """Run until `stop()`: drain on every NOTIFY, poll as a fallback, back off while failing."""
        listener = asyncio.create_task(
            listen(self._engine, NOTIFY_CHANNEL, self._wake, max_backoff=self._max_backoff), name="outbox-listen"
        )
        backoff = Backoff("outbox_relay_failed", cap=self._max_backoff, logger=log)
        try:
            while not self._stopping.is_set():
                self._wake.clear()
                try:
                    await self._drain()
                    backoff.succeeded()
                except Exception as error:  # noqa: BLE001 - any fault: back off, keep the rows, retry
                    await self._sleep(backoff.failed(error))
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_interval)
        finally:
            listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await listener

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _drain(self) -> None:
        if await self.relay_batch() < self._batch_size:
            return
        # A backlog: two batches at a time, so that one's database work overlaps the other's wait
        # for the broker's confirms (SKIP LOCKED keeps their rows apart).
        await asyncio.gather(self._drain_serially(), self._drain_serially())

    async def _drain_serially(self) -> None:
        while not self._stopping.is_set():
            if await self.relay_batch() < self._batch_size:
                return

    async def relay_batch(self) -> int:
        """Claim, publish and mark one batch in one transaction. Returns how many rows it claimed.

        On asyncpg's own connection, with statements it prepares once: the relay runs a batch per
        NOTIFY, often of one row, so what a batch costs beside its publishes is what matters.
        The payload goes out as stored: the unit of work wrote it from a validated envelope.
        """
        await self._publisher.exchange()  # raises while the broker is down: no row is locked or marked
        async with driver_connection(self._engine) as conn, conn.transaction():
            rows = await conn.fetch(CLAIM_SQL, self._batch_size)
            if not rows:
                return 0
            publishing = (
                self._publisher.publish_json(
                    row["body"].encode(),
                    message_id=row["id"],
                    type=row["type"],
                    correlation_id=row["correlation_id"],
                    occurred_at=row["created_at"],
                    routing_key=row["routing_key"],
                    headers=_trace_headers(row),
                )
                for row in rows
            )
            if tracing.TRACER is None:
                results = await asyncio.gather(*publishing, return_exceptions=True)
            else:
                with _publish_span(tracing.TRACER, rows):
                    results = await asyncio.gather(*publishing, return_exceptions=True)
            sent = [row["id"] for row, result in zip(rows, results, strict=True) if result is None]
            failed = [(row["id"], result) for row, result in zip(rows, results, strict=True) if result is not None]
            if sent:
                await conn.execute(_MARK_PUBLISHED_SQL, sent)
            if failed:
                await conn.execute(_MARK_FAILED_SQL, [message_id for message_id, _ in failed], repr(failed[0][1])[:500])
        OUTBOX_PUBLISHED.inc(len(sent))
        OUTBOX_BATCH_SIZE.observe(len(rows))
        log.info("outbox_batch_published", published=len(sent), claimed=len(rows))  # one line per batch
        if failed:
            OUTBOX_PUBLISH_FAILURES.inc()
            raise PublishFailed(len(failed), len(rows)) from failed[0][1]
        return len(rows)
