"""fastmicro.db: the mixins, and telling an unreachable database from a wrong statement."""

from __future__ import annotations

import uuid

import asyncpg
import pytest
from sqlalchemy import MetaData, String, exc
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from fastmicro.db import NAMING_CONVENTION, Base, Timestamps, UUIDPrimaryKey, is_connection_error, unique_violation


class DbTestBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Part(UUIDPrimaryKey, Timestamps, DbTestBase):
    __tablename__ = "parts"

    name: Mapped[str] = mapped_column(String(50), unique=True)


def test_constraints_are_named_by_the_convention() -> None:
    names = {constraint.name for constraint in DbTestBase.metadata.tables["parts"].constraints}

    assert names == {"pk_parts", "uq_parts_name"}
    assert Base.metadata.naming_convention == NAMING_CONVENTION


def test_a_new_entity_has_its_id_before_any_round_trip() -> None:
    assert isinstance(Part(name="gear").id, uuid.UUID)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError(),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        exc.TimeoutError("QueuePool limit reached"),
        exc.OperationalError("SELECT 1", None, ConnectionResetError()),
        exc.InterfaceError("SELECT 1", None, Exception("connection is closed")),
    ],
    ids=["refused", "timeout", "starting-up", "too-many-clients", "pool-timeout", "operational", "interface"],
)
def test_transport_failures_are_connection_errors(error: BaseException) -> None:
    assert is_connection_error(error)


def test_a_transport_failure_found_through_the_cause_chain() -> None:
    error = RuntimeError("while talking to the database")
    error.__cause__ = OSError("network unreachable")

    assert is_connection_error(error)


@pytest.mark.parametrize(
    "error",
    [
        ValueError("bad input"),
        exc.ProgrammingError("SELECT nope", None, Exception("relation does not exist")),
        exc.IntegrityError("INSERT", None, Exception("duplicate key")),
    ],
    ids=["value-error", "programming-error", "integrity-error"],
)
def test_statement_failures_are_not_connection_errors(error: BaseException) -> None:
    assert not is_connection_error(error)


def test_unique_violation_without_a_driver_cause_is_none() -> None:
    assert unique_violation(exc.IntegrityError("INSERT", None, Exception("duplicate key"))) is None
