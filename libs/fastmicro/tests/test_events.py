"""Domain events, their envelope and the (type, version) registry."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pydantic
import pytest

from fastmicro import context
from fastmicro.events import DomainEvent, Envelope, EventRegistry


class ThingCreated(DomainEvent):
    type: ClassVar[str] = "ThingCreated"
    source: ClassVar[str] = "kernel-test"

    thing_id: uuid.UUID
    name: str


class ThingCreatedV2(DomainEvent):
    type: ClassVar[str] = "ThingCreated"
    version: ClassVar[int] = 2
    source: ClassVar[str] = "kernel-test"

    thing_id: uuid.UUID
    title: str


class ImpostorThingCreated(DomainEvent):
    type: ClassVar[str] = "ThingCreated"
    source: ClassVar[str] = "elsewhere"

    thing_id: uuid.UUID


@pytest.fixture
def registry() -> EventRegistry:
    registry = EventRegistry()
    registry.register(ThingCreated)
    registry.register(ThingCreatedV2)
    return registry


@pytest.fixture
def request_context() -> Iterator[tuple[str, uuid.UUID]]:
    """As if handling request `req-42` on behalf of the event `cause`."""
    cause = uuid.uuid4()
    correlation_token = context.correlation_id.set("req-42")
    causation_token = context.causation_id.set(cause)
    yield "req-42", cause
    context.causation_id.reset(causation_token)
    context.correlation_id.reset(correlation_token)


def thing() -> ThingCreated:
    return ThingCreated(thing_id=uuid.uuid4(), name="bolt")


def test_routing_key_is_source_dot_type() -> None:
    assert ThingCreated.routing_key() == "kernel-test.ThingCreated"
    assert Envelope.wrap(thing()).routing_key == "kernel-test.ThingCreated"


def test_events_are_immutable() -> None:
    event = thing()

    with pytest.raises(pydantic.ValidationError):
        event.name = "nut"  # type: ignore[misc]


def test_wrap_copies_the_event_into_the_envelope() -> None:
    event = thing()

    envelope = Envelope.wrap(event)

    assert (envelope.type, envelope.version, envelope.source) == ("ThingCreated", 1, "kernel-test")
    assert envelope.data == {"thing_id": str(event.thing_id), "name": "bolt"}
    assert envelope.id != Envelope.wrap(event).id


def test_wrap_outside_a_request_has_no_correlation_or_causation() -> None:
    envelope = Envelope.wrap(thing())

    assert envelope.correlation_id is None
    assert envelope.causation_id is None


def test_wrap_takes_correlation_and_causation_from_the_context(request_context: tuple[str, uuid.UUID]) -> None:
    correlation_id, causation_id = request_context

    envelope = Envelope.wrap(thing())

    assert envelope.correlation_id == correlation_id
    assert envelope.causation_id == causation_id


def test_occurred_at_is_now_in_utc_and_serialised_with_z() -> None:
    envelope = Envelope.wrap(thing())

    assert abs(envelope.occurred_at - datetime.now(UTC)) < timedelta(seconds=5)
    wire = json.loads(envelope.model_dump_json())
    assert wire["occurred_at"].endswith("Z")
    assert envelope.model_dump(mode="json")["occurred_at"] == wire["occurred_at"]
    assert datetime.fromisoformat(wire["occurred_at"]) == envelope.occurred_at


def test_envelope_survives_the_wire(request_context: tuple[str, uuid.UUID]) -> None:
    envelope = Envelope.wrap(thing())

    assert Envelope.model_validate_json(envelope.model_dump_json()) == envelope


def test_envelope_reads_the_contract_example_and_ignores_unknown_fields() -> None:
    wire = {
        "id": str(uuid.uuid4()),
        "type": "OrderPlaced",
        "version": 1,
        "source": "orders",
        "occurred_at": "2026-11-22T10:00:00.123456Z",
        "correlation_id": None,
        "causation_id": None,
        "data": {"order_id": str(uuid.uuid4())},
        "added_later": True,
    }

    envelope = Envelope.model_validate(wire)

    assert envelope.occurred_at == datetime(2026, 11, 22, 10, 0, 0, 123456, tzinfo=UTC)
    assert "added_later" not in envelope.model_dump()


def test_envelope_refuses_version_zero() -> None:
    with pytest.raises(pydantic.ValidationError):
        Envelope.model_validate({**Envelope.wrap(thing()).model_dump(), "version": 0})


def test_registering_the_same_class_twice_is_harmless(registry: EventRegistry) -> None:
    assert registry.register(ThingCreated) is ThingCreated


def test_registering_another_class_under_a_taken_key_raises(registry: EventRegistry) -> None:
    with pytest.raises(ValueError, match="already registered as ThingCreated"):
        registry.register(ImpostorThingCreated)
