"""The rules of the schema gate: each change a reader of a published version would not survive is named."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import pytest
from pydantic import Field

from fastmicro.asyncapi import snapshot_schema
from fastmicro.compatibility import breaking_changes
from fastmicro.events import DomainEvent


class Base(DomainEvent):
    type: ClassVar[str] = "Thing"
    source: ClassVar[str] = "things"

    thing_id: int
    name: Annotated[str, Field(min_length=1, max_length=100)]
    colour: Literal["red", "blue"]
    note: str | None = None


class Renamed(DomainEvent):
    type: ClassVar[str] = "Thing"
    source: ClassVar[str] = "things"

    thing_id: int
    title: Annotated[str, Field(min_length=1, max_length=100)]
    colour: Literal["red", "blue"]
    note: str | None = None


class Narrowed(Base):
    name: Annotated[str, Field(min_length=1, max_length=50)]
    note: str


class EnumChanged(Base):
    colour: Literal["red", "green"]  # type: ignore[assignment]


class OptionalAdded(Base):
    size: int | None = None


class RequiredAdded(Base):
    size: int


class Widened(Base):
    thing_id: int | str  # type: ignore[assignment]
    name: Annotated[str, Field(min_length=1, max_length=200)]


def rules(new: type[DomainEvent]) -> list[tuple[str, str]]:
    return [(b.rule, b.path) for b in breaking_changes(snapshot_schema(Base), snapshot_schema(new))]


def test_the_same_schema_breaks_nothing() -> None:
    assert rules(Base) == []


def test_an_optional_field_added_breaks_nobody() -> None:
    assert rules(OptionalAdded) == []


def test_a_field_removed_or_renamed() -> None:
    found = rules(Renamed)
    assert ("field removed or renamed", "data.name") in found
    assert ("required field added", "data.title") in found


def test_a_type_narrowed() -> None:
    found = rules(Narrowed)
    assert ("type narrowed", "data.name") in found  # maxLength 100 -> 50
    assert ("type narrowed", "data.note") in found  # None no longer accepted
    assert ("required field added", "data.note") in found


def test_an_enum_value_removed_and_one_added() -> None:
    found = rules(EnumChanged)
    assert ("enum value removed", "data.colour") in found
    assert ("enum value added", "data.colour") in found


def test_a_required_field_added() -> None:
    assert rules(RequiredAdded) == [("required field added", "data.size")]


def test_a_type_widened_breaks_the_readers_that_check_bounds() -> None:
    assert rules(Widened) == [("type widened", "data.name"), ("type widened", "data.thing_id")]


@pytest.mark.parametrize("key", ["field no longer required"])
def test_a_required_field_made_optional(key: str) -> None:
    class Loosened(Base):
        thing_id: int | None = None  # type: ignore[assignment]

    assert (key, "data.thing_id") in rules(Loosened)
