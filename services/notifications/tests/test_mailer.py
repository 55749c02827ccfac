"""The mailer keeps its SMTP connections open between rounds, and never reuses one that is not fit to send."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from fastmicro.db import utcnow
from notifications import mailer as mailer_module
from notifications.mailer import Mailer

from .conftest import make_settings
from .helpers import SmtpSink, eventually, pending_welcome


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    sink = await SmtpSink().start()
    yield sink
    await sink.stop()


def mailer_for(sink: SmtpSink) -> Mailer:
    return Mailer.from_settings(make_settings(smtp_port=sink.port, database_url="postgresql+asyncpg://unused/x"))


@pytest.fixture
async def mailer(sink: SmtpSink) -> AsyncIterator[Mailer]:
    mailer = mailer_for(sink)
    yield mailer
    await mailer.close()


async def send_round(mailer: Mailer) -> None:
    async with mailer.connect() as connection:
        await connection.send(pending_welcome(utcnow()))


def peers(sink: SmtpSink) -> list[object]:
    return [mail.peer for mail in sink.collector.received]


async def test_rounds_share_one_connection(sink: SmtpSink, mailer: Mailer) -> None:
    await send_round(mailer)
    await send_round(mailer)

    first, second = peers(sink)
    assert first is not None
    assert first == second
    assert mailer.idle_connections == 1


async def test_a_connection_the_server_closed_while_idle_is_replaced() -> None:
    first_sink = await SmtpSink().start()
    mailer = mailer_for(first_sink)
    try:
        await send_round(mailer)
        await first_sink.stop()  # closes every connection it holds
        await eventually(lambda: mailer.idle_connections == 0 or None)  # the end of stream has reached the mailer
        second_sink = await SmtpSink(port=first_sink.port, collector=first_sink.collector).start()
        try:
            await send_round(mailer)
        finally:
            await second_sink.stop()
    finally:
        await mailer.close()

    first, second = peers(first_sink)
    assert first != second


async def test_a_round_that_failed_closes_its_connection(sink: SmtpSink, mailer: Mailer) -> None:
    with pytest.raises(RuntimeError):
        async with mailer.connect() as connection:
            await connection.send(pending_welcome(utcnow()))
            raise RuntimeError("the round failed")

    assert mailer.idle_connections == 0
    await send_round(mailer)
    first, second = peers(sink)
    assert first != second


async def test_a_connection_idle_too_long_is_not_reused(
    sink: SmtpSink, mailer: Mailer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mailer_module, "IDLE_KEEP_SECONDS", 0.0)

    await send_round(mailer)
    await send_round(mailer)

    first, second = peers(sink)
    assert first != second
