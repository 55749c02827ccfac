"""The units of work against real PostgreSQL: state and its events commit together, or not at all."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any, ClassVar

import pytest
from sqlalchemy import CheckConstraint, MetaData, String, func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastmicro.db import (
    NAMING_CONVENTION,
    Timestamps,
    UUIDPrimaryKey,
    create_engine,
    create_session_factory,
    is_connection_error,
    unique_violation,
)
from fastmicro.errors import ServiceUnavailable
from fastmicro.events import DomainEvent, Envelope
from fastmicro.outbox import outbox_table
from fastmicro.settings import ServiceSettings
from fastmicro.testing.plugin import DatabaseFactory, ProxyFactory
from fastmicro.uow import OutboxUnitOfWork, UnitOfWork


class UowTestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Widget(UUIDPrimaryKey, Timestamps, UowTestBase):
    __tablename__ = "widgets"

    name: Mapped[str] = mapped_column(String(50), unique=True)
    stock: Mapped[int] = mapped_column(default=0)

    __table_args__ = (CheckConstraint("stock >= 0", name="stock_not_negative"),)


class WidgetMade(DomainEvent):
    type: ClassVar[str] = "WidgetMade"
    source: ClassVar[str] = "kernel-test"

    widget_id: uuid.UUID


@pytest.fixture
async def database_url(database_factory: DatabaseFactory) -> str:
    url = await database_factory("uow")
    engine = create_async_engine(url)
    async with engine.begin() as conn:
        await conn.run_sync(UowTestBase.metadata.create_all)
        await conn.run_sync(outbox_table.create)
    await engine.dispose()
    return url


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    yield engine
    await engine.dispose()


def unit_of_work(engine: AsyncEngine) -> OutboxUnitOfWork:
    return OutboxUnitOfWork(create_session_factory(engine))


async def widget_names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.scalars(select(Widget.name).order_by(Widget.name))).all())


async def outbox(engine: AsyncEngine) -> dict[uuid.UUID, Any]:
    async with engine.connect() as conn:
        return {row.id: row for row in await conn.execute(select(outbox_table))}


async def test_commit_persists_the_state_and_one_outbox_row_per_event(engine: AsyncEngine) -> None:
    async with unit_of_work(engine) as uow:
        widget = Widget(id=uuid.uuid4(), name="sprocket")
        uow.session.add(widget)
        envelopes = [uow.emit(WidgetMade(widget_id=widget.id)) for _ in range(2)]
        await uow.commit()

    assert await widget_names(engine) == ["sprocket"]
    rows = await outbox(engine)
    assert set(rows) == {envelope.id for envelope in envelopes}
    for envelope in envelopes:
        row = rows[envelope.id]
        assert row.routing_key == "kernel-test.WidgetMade"
        assert row.payload == envelope.model_dump(mode="json")
        assert Envelope.model_validate(row.payload) == envelope
        assert row.published_at is None


async def test_commit_without_events_writes_no_outbox_row(engine: AsyncEngine) -> None:
    async with unit_of_work(engine) as uow:
        uow.session.add(Widget(name="quiet"))
        await uow.commit()

    assert await widget_names(engine) == ["quiet"]
    assert await outbox(engine) == {}


async def test_a_unit_of_work_without_an_outbox_emits_nothing_and_needs_no_outbox_table(
    database_factory: DatabaseFactory,
) -> None:
    engine = create_async_engine(await database_factory("uow_plain"))
    try:
        async with engine.begin() as conn:
            await conn.run_sync(UowTestBase.metadata.create_all)  # no outbox table here
        async with UnitOfWork(create_session_factory(engine)) as uow:
            assert not hasattr(uow, "emit")
            uow.session.add(Widget(name="plain"))
            await uow.commit()
        assert await widget_names(engine) == ["plain"]
    finally:
        await engine.dispose()


async def test_entities_stay_readable_after_the_block(engine: AsyncEngine) -> None:
    async with unit_of_work(engine) as uow:
        widget = Widget(name="sprocket", stock=3)
        uow.session.add(widget)
        await uow.commit()

    assert (widget.name, widget.stock) == ("sprocket", 3)


async def test_leaving_without_commit_persists_nothing(engine: AsyncEngine) -> None:
    async with unit_of_work(engine) as uow:
        widget = Widget(name="forgotten")
        uow.session.add(widget)
        await uow.session.flush()
        uow.emit(WidgetMade(widget_id=widget.id))

    assert await widget_names(engine) == []
    assert await outbox(engine) == {}


async def test_an_exception_in_the_block_rolls_back_and_propagates(engine: AsyncEngine) -> None:
    with pytest.raises(RuntimeError, match="use case failed"):
        async with unit_of_work(engine) as uow:
            widget = Widget(name="doomed")
            uow.session.add(widget)
            await uow.session.flush()
            uow.emit(WidgetMade(widget_id=widget.id))
            raise RuntimeError("use case failed")

    assert await widget_names(engine) == []
    assert await outbox(engine) == {}


async def test_a_new_block_starts_without_the_previous_events(engine: AsyncEngine) -> None:
    uow = unit_of_work(engine)
    async with uow:
        uow.emit(WidgetMade(widget_id=uuid.uuid4()))  # left without commit
    async with uow:
        kept = uow.emit(WidgetMade(widget_id=uuid.uuid4()))
        await uow.commit()

    assert set(await outbox(engine)) == {kept.id}


async def test_unique_violation_names_the_constraint(engine: AsyncEngine) -> None:
    async with unit_of_work(engine) as uow:
        uow.session.add(Widget(name="taken"))
        await uow.commit()

    with pytest.raises(IntegrityError) as caught:
        async with unit_of_work(engine) as uow:
            uow.session.add(Widget(name="taken"))
            uow.emit(WidgetMade(widget_id=uuid.uuid4()))
            await uow.commit()

    assert unique_violation(caught.value) == "uq_widgets_name"
    assert not is_connection_error(caught.value)
    assert len(await outbox(engine)) == 0


async def test_unique_violation_is_none_for_other_integrity_errors(engine: AsyncEngine) -> None:
    with pytest.raises(IntegrityError) as caught:
        async with unit_of_work(engine) as uow:
            uow.session.add(Widget(name="negative", stock=-1))
            await uow.commit()

    assert unique_violation(caught.value) is None


async def test_a_bad_statement_is_not_a_connection_error(engine: AsyncEngine) -> None:
    with pytest.raises(Exception) as caught:  # noqa: PT011 - the driver's own error, whatever its class
        async with unit_of_work(engine) as uow:
            await uow.session.execute(text("SELECT * FROM no_such_table"))

    assert not isinstance(caught.value, ServiceUnavailable)
    assert not is_connection_error(caught.value)


def proxied_settings(database_url: str) -> ServiceSettings:
    return ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=database_url,
        db_connect_timeout=2.0,
        db_pool_timeout=2.0,
        _env_file=None,
    )


async def test_an_unreachable_database_is_service_unavailable(database_url: str, tcp_proxy: ProxyFactory) -> None:
    proxy = await tcp_proxy(database_url)
    engine = create_engine(proxied_settings(proxy.url_for(database_url)))
    try:
        await proxy.cut()
        with pytest.raises(ServiceUnavailable) as caught:
            async with unit_of_work(engine) as uow:
                await uow.session.execute(select(func.count()).select_from(Widget))
    finally:
        await engine.dispose()

    assert caught.value.status == 503
    assert caught.value.__cause__ is not None
    assert is_connection_error(caught.value.__cause__)


async def test_a_database_lost_mid_transaction_is_service_unavailable(
    database_url: str, engine: AsyncEngine, tcp_proxy: ProxyFactory
) -> None:
    proxy = await tcp_proxy(database_url)
    proxied = create_engine(proxied_settings(proxy.url_for(database_url)))
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            async with unit_of_work(proxied) as uow:
                widget = Widget(name="lost")
                uow.session.add(widget)
                await uow.session.flush()  # the transaction holds a connection now
                uow.emit(WidgetMade(widget_id=widget.id))
                await proxy.cut()
                await uow.commit()
    finally:
        await proxied.dispose()

    assert caught.value.__cause__ is not None
    assert is_connection_error(caught.value.__cause__)
    assert await widget_names(engine) == []
    assert await outbox(engine) == {}


async def test_service_unavailable_from_commit_is_caused_by_the_driver_error(
    database_url: str, tcp_proxy: ProxyFactory
) -> None:
    proxy = await tcp_proxy(database_url)
    proxied = create_engine(proxied_settings(proxy.url_for(database_url)))
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            async with unit_of_work(proxied) as uow:
                await uow.session.execute(select(1))
                await proxy.cut()
                await uow.commit()
    finally:
        await proxied.dispose()

    assert not isinstance(caught.value.__cause__, ServiceUnavailable)


async def test_the_unit_of_work_recovers_when_the_database_returns(
    database_url: str, engine: AsyncEngine, tcp_proxy: ProxyFactory
) -> None:
    proxy = await tcp_proxy(database_url)
    proxied = create_engine(proxied_settings(proxy.url_for(database_url)))
    try:
        async with unit_of_work(proxied) as uow:  # a pooled connection exists, then dies with the cut
            uow.session.add(Widget(name="before"))
            await uow.commit()
        await proxy.cut()
        with pytest.raises(ServiceUnavailable):
            async with unit_of_work(proxied) as uow:
                await uow.session.execute(select(1))
        await proxy.restore()

        async with unit_of_work(proxied) as uow:
            uow.session.add(Widget(name="after"))
            await uow.commit()
    finally:
        await proxied.dispose()

    assert await widget_names(engine) == ["after", "before"]
