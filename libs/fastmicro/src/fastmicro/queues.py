"""The arguments every queue of the topology is declared with, for classic or quorum queues.

`QUEUE_TYPE` picks the type: classic by default (one node, where a quorum queue replicates nothing
and costs capacity), quorum where the broker has several nodes (the prod overlay sets it). A
quorum queue is replicated over a majority of the cluster's nodes: it survives the loss of a node
where a classic queue lives on one. What quorum queues need here:

- the service queue (`<svc>.events`) has an explicit delivery limit (`CONSUMER_DELIVERY_LIMIT`):
  a message redelivered that often (a consumer that crashes on it every time) is dead-lettered
  into `<svc>.events.dead`, never dropped. RabbitMQ 4 would otherwise apply its default (20).
- the delay queues (`<svc>.events.retry.<ms>ms`) dead-letter back into the service queue
  when their TTL ends; `at-least-once` dead-lettering keeps a message in the delay queue until
  the service queue has confirmed its copy (at-most-once would drop it if that failed). The
  broker requires `overflow: reject-publish` for it. The service queue dead-letters the same way.
- the dead-letter queue and the unrouted queue have no delivery limit: their tools read them by
  taking and returning messages (AMQP has no peek), which a quorum queue counts as deliveries.
  RabbitMQ 4 gives every quorum queue a limit of 20 unless told `-1`; 3.x has none and reads
  `-1` as a limit, so `-1` is sent to RabbitMQ 4 and later only.

Classic queues keep the arguments they always had, so an existing classic deployment declares
exactly what it declared before. Arguments are part of a queue's identity: redeclaring a queue
with others fails (PRECONDITION_FAILED), so a change of type goes through `python -m <svc>
queues migrate` (fastmicro.queue_migration).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from aio_pika.abc import AbstractChannel

QueueType = Literal["quorum", "classic"]

#: Deliveries of one message from a service queue before the broker dead-letters it.
DEFAULT_DELIVERY_LIMIT = 10


@dataclass(frozen=True)
class QueueArguments:
    """What each kind of queue is declared with, for one queue type and broker version."""

    queue_type: QueueType = "classic"
    delivery_limit: int = DEFAULT_DELIVERY_LIMIT
    broker_major: int = 3

    @property
    def quorum(self) -> bool:
        return self.queue_type == "quorum"

    def _unlimited(self) -> dict[str, Any]:
        base: dict[str, Any] = {"x-queue-type": "quorum"}
        if self.broker_major >= 4:
            base["x-delivery-limit"] = -1
        return base

    def service(self, dead_queue: str) -> dict[str, Any]:
        if not self.quorum:
            return {}
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": self.delivery_limit,
            **_dead_letter_to(dead_queue),
        }

    def delay(self, ttl_ms: int, service_queue: str) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-message-ttl": ttl_ms,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": service_queue,
        }
        if self.quorum:
            arguments = {"x-queue-type": "quorum", **arguments, **_dead_letter_to(service_queue)}
        return arguments

    def dead(self) -> dict[str, Any]:
        return self._unlimited() if self.quorum else {}

    def unrouted(self) -> dict[str, Any]:
        return self._unlimited() if self.quorum else {}


def _dead_letter_to(queue: str) -> dict[str, Any]:
    return {
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": queue,
        "x-dead-letter-strategy": "at-least-once",
        "x-overflow": "reject-publish",  # at-least-once dead-lettering requires it
    }


async def broker_major(channel: AbstractChannel) -> int:
    """The major version of the RabbitMQ server `channel` is open on (from its connection's properties)."""
    underlay = await channel.get_underlay_channel()
    version = underlay.connection.server_properties.get("version", b"3")
    text = version.decode() if isinstance(version, bytes) else str(version)
    major = text.split(".", 1)[0]
    return int(major) if major.isdigit() else 3
