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


class ThingCreatedV3(DomainEvent):
    type: ClassVar[str] = "ThingCreated"
    version: ClassVar[int] = 3
    source: ClassVar[str] = "kernel-test"

    thing_id: uuid.UUID
    title: str
    tags: tuple[str, ...]


def title_from_name(old: ThingCreated) -> ThingCreatedV2:
    return ThingCreatedV2(thing_id=old.thing_id, title=old.name.title())


def no_tags_yet(old: ThingCreatedV2) -> ThingCreatedV3:
    return ThingCreatedV3(thing_id=old.thing_id, title=old.title, tags=())


@pytest.fixture
def chain(registry: EventRegistry) -> EventRegistry:
    """ThingCreated v1 -> v2 -> v3, one upcaster per step."""
    registry.register(ThingCreatedV3)
    registry.upcaster(ThingCreated, ThingCreatedV2)(title_from_name)
    registry.upcaster(ThingCreatedV2, ThingCreatedV3)(no_tags_yet)
    return registry


def test_an_old_version_is_upcast_one_step_at_a_time_to_the_one_asked_for(chain: EventRegistry) -> None:
    old = thing()

    assert chain.upcast(old, ThingCreatedV2) == ThingCreatedV2(thing_id=old.thing_id, title="Bolt")
    assert chain.upcast(old, ThingCreatedV3) == ThingCreatedV3(thing_id=old.thing_id, title="Bolt", tags=())
    newest = ThingCreatedV3(thing_id=old.thing_id, title="Nut", tags=("m4",))
    assert chain.upcast(newest, ThingCreatedV3) is newest  # already there: nothing to do


def test_what_can_be_read_as_a_version_is_itself_and_each_older_one_with_an_unbroken_chain(
    chain: EventRegistry,
) -> None:
    assert tuple(chain.readable_as(ThingCreatedV3)) == (ThingCreatedV3, ThingCreatedV2, ThingCreated)
    assert tuple(chain.readable_as(ThingCreatedV2)) == (ThingCreatedV2, ThingCreated)
    assert tuple(chain.readable_as(ThingCreated)) == (ThingCreated,)


def test_a_chain_with_a_missing_step_reads_only_the_versions_above_the_gap(registry: EventRegistry) -> None:
    registry.register(ThingCreatedV3)
    registry.upcaster(ThingCreatedV2, ThingCreatedV3)(no_tags_yet)  # no v1 -> v2

    assert registry.readable_as(ThingCreatedV3) == [ThingCreatedV3, ThingCreatedV2]
    with pytest.raises(LookupError, match="ThingCreated v1 has no upcaster to v2"):
        registry.upcast(thing(), ThingCreatedV3)


def test_an_event_is_never_upcast_down_or_into_another_type(chain: EventRegistry) -> None:
    newer = ThingCreatedV2(thing_id=uuid.uuid4(), title="Bolt")
    with pytest.raises(ValueError, match="cannot become ThingCreated v1"):
        chain.upcast(newer, ThingCreated)


def test_the_newest_version_of_each_type_is_what_its_producer_sends(chain: EventRegistry) -> None:
    assert chain.newest() == [ThingCreatedV3]


@pytest.mark.parametrize(
    ("old", "new", "refusal"),
    [
        (ThingCreated, ThingCreatedV3, "not ThingCreated v1 -> ThingCreated v3"),
        (ThingCreatedV2, ThingCreated, "not ThingCreated v2 -> ThingCreated v1"),
        (ImpostorThingCreated, ThingCreatedV2, "ImpostorThingCreated is not registered"),
    ],
    ids=["skips-a-version", "goes-down", "unregistered"],
)
def test_an_upcaster_goes_exactly_one_version_up_between_registered_classes(
    chain: EventRegistry, old: type[DomainEvent], new: type[DomainEvent], refusal: str
) -> None:
    with pytest.raises(ValueError, match=refusal):
        chain.upcaster(old, new)


def test_a_version_has_one_upcaster_only(chain: EventRegistry) -> None:
    def another(old: ThingCreated) -> ThingCreatedV2:
        return ThingCreatedV2(thing_id=old.thing_id, title=old.name)

    with pytest.raises(ValueError, match="ThingCreated v1 already has an upcaster: title_from_name"):
        chain.upcaster(ThingCreated, ThingCreatedV2)(another)
    assert chain.upcaster(ThingCreated, ThingCreatedV2)(title_from_name) is title_from_name  # the same: harmless


def test_an_upcaster_that_makes_another_class_is_caught(registry: EventRegistry) -> None:
    def wrong(old: ThingCreated) -> ThingCreatedV2:
        return old  # type: ignore[return-value]  # the bug this test is about

    registry.upcaster(ThingCreated, ThingCreatedV2)(wrong)
    with pytest.raises(TypeError, match="the upcaster of ThingCreated v1 made a ThingCreated, not ThingCreatedV2"):
        registry.upcast(thing(), ThingCreatedV2)
