"""The producers' committed example messages (libs/contracts/schemas/), for a consumer's contract tests.

    delivery = EventDelivery(SUBSCRIPTIONS, uow_factory)
    for event in delivery.handling.readable:  # the subscribed versions and the older ones upcast to them
        assert (await delivery.deliver(committed_example(event))).kind == "handled"

The examples are what the producer's schema of each version is checked against (the contracts'
tests); a consumer that accepts them accepts what its producers send, version by version.
"""

from __future__ import annotations

from pathlib import Path

from fastmicro.asyncapi import message_name
from fastmicro.events import DomainEvent
from fastmicro.workspace import find_root


def committed_example(event: type[DomainEvent], root: Path | None = None) -> bytes:
    """The body of the committed example message of `event`'s type and version, exactly as stored."""
    folder = (root or find_root()) / "libs" / "contracts" / "schemas" / event.source
    return (folder / f"{message_name(event)}.example.json").read_bytes()
