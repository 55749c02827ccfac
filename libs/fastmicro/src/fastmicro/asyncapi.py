"""The AsyncAPI 3 document of the events, read from the code: nothing in it is written twice.

Every event class (`fastmicro.events.registry`) is a message: its envelope, with the class's own JSON
Schema as `data`, travelling on the channel of its routing key (`<source>.<Type>`) of the topic
exchange. Its sender is the service its `source` names, for the newest version of each type (an
older one is kept for the messages still on their way); its receivers are the services whose
consumer subscribes to it, or to a newer version it is upcast to (their SUBSCRIPTIONS, as
`EventConsumer.handling` holds them). Each consumer's queue, delay queues and dead-letter queue
are channels too.

`document(parts)` describes several services at once (docs/asyncapi.yaml, tools/events.py);
`service_document(name, roles)` one service's part, as its `GET /asyncapi.json` serves it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastmicro.consumer import EventConsumer
from fastmicro.events import DomainEvent, Envelope, registry
from fastmicro.messaging import Topology

ASYNCAPI_VERSION = "3.0.0"
_AMQP_BINDING = "0.3.0"


@dataclass(frozen=True)
class ServiceEvents:
    """What one service does on the bus: the events it sends, and its consumer (if it has one)."""

    name: str
    consumer: EventConsumer[Any] | None = None
    sends: tuple[type[DomainEvent], ...] = field(default=())

    @property
    def receives(self) -> tuple[type[DomainEvent], ...]:
        if self.consumer is None:
            return ()
        return tuple(self.consumer.handling.readable)


def events_of(service: str) -> tuple[type[DomainEvent], ...]:
    """The event classes `service` publishes: the newest version of each type whose `source` it is."""
    return tuple(cls for cls in registry.newest() if cls.source == service)


def service_events(name: str, roles: Iterable[object]) -> ServiceEvents:
    """A service as its background roles show it: its consumer among them, its events by `source`."""
    consumer = next((role for role in roles if isinstance(role, EventConsumer)), None)
    return ServiceEvents(name, consumer, events_of(name))


def message_name(event: type[DomainEvent]) -> str:
    return f"{event.type}.v{event.version}"


def data_schema(event: type[DomainEvent], ref_template: str = "#/$defs/{model}") -> dict[str, Any]:
    """The JSON Schema of an event's `data`, as its class validates it (what a reader accepts)."""
    return event.model_json_schema(mode="validation", ref_template=ref_template)


def envelope_schema(event: type[DomainEvent], data: dict[str, Any]) -> dict[str, Any]:
    """The envelope of docs/contract.md carrying `event`, with `data` as its data's schema."""
    schema = Envelope.model_json_schema(mode="validation")
    properties = schema["properties"]
    properties["type"] = {"const": event.type, "type": "string"}
    properties["version"] = {"const": event.version, "type": "integer"}
    properties["source"] = {"const": event.source, "type": "string"}
    properties["data"] = data
    schema["title"] = f"{event.type} v{event.version}"
    schema["description"] = (event.__doc__ or "").strip() or f"The envelope of {event.type} version {event.version}."
    return schema


def snapshot_schema(event: type[DomainEvent]) -> dict[str, Any]:
    """The self-contained JSON Schema of an event version's whole message (libs/contracts/schemas/)."""
    data = data_schema(event)
    definitions = data.pop("$defs", None)
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **envelope_schema(event, data)}
    if definitions:
        schema["$defs"] = definitions
    return schema


def document(
    parts: Sequence[ServiceEvents],
    *,
    title: str = "fastmicro events",
    version: str = "0.1.0",
    description: str = "",
    topology: Topology | None = None,
) -> dict[str, Any]:
    """The AsyncAPI 3 document of `parts`: their messages, channels and operations.

    `topology` names the exchange (its namespace: the consumers' queues already carry theirs).
    """
    topology = topology or Topology()
    events: dict[str, type[DomainEvent]] = {}
    for part in parts:
        for event in (*part.sends, *part.receives):
            events.setdefault(message_name(event), event)
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    exchange = {
        "name": topology.events_exchange,
        "type": "topic",
        "durable": True,
        "autoDelete": False,
        "vhost": "/",
    }
    for name in sorted(events):
        event = events[name]
        data = data_schema(event, ref_template="#/components/schemas/{model}")
        for model, definition in data.pop("$defs", {}).items():
            if schemas.setdefault(model, definition) != definition:
                raise ValueError(f"two event schemas define {model} differently: name one of them apart")
        schemas[name] = data
        payload = envelope_schema(event, {"$ref": f"#/components/schemas/{name}"})
        messages[name] = {
            "name": event.type,
            "title": f"{event.type} v{event.version}",
            "summary": payload["description"],
            "contentType": "application/json",
            "correlationId": {"location": "$message.payload#/correlation_id"},
            "payload": payload,
            "bindings": {"amqp": {"messageType": event.type, "bindingVersion": _AMQP_BINDING}},
            "x-fastmicro-version": event.version,
        }
        key = event.routing_key()
        channel = channels.setdefault(
            key,
            {
                "address": key,
                "title": key,
                "description": f"Routing key `{key}` on the topic exchange `{topology.events_exchange}`.",
                "messages": {},
                "bindings": {"amqp": {"is": "routingKey", "exchange": exchange, "bindingVersion": _AMQP_BINDING}},
            },
        )
        channel["messages"][name] = {"$ref": f"#/components/messages/{name}"}
    for part in sorted(parts, key=lambda p: p.name):
        for event in sorted(part.sends, key=message_name):
            operations[f"{part.name}.send.{message_name(event)}"] = _operation(
                "send", event, f"{part.name} publishes {event.type} v{event.version} (through its outbox).", part.name
            )
        if part.consumer is None:
            continue
        for event in sorted(part.receives, key=message_name):
            upcast_to = part.consumer.handling.upcast_to(event)
            how = "" if upcast_to is None else f", upcast to v{upcast_to.version} before its handler sees it"
            operation = _operation(
                "receive",
                event,
                f"{part.name} handles {event.type} v{event.version} from its queue `{part.consumer.queue_name}`{how}.",
                part.name,
            )
            operation["x-fastmicro-queue"] = part.consumer.queue_name
            operations[f"{part.name}.receive.{message_name(event)}"] = operation
        _queues(part.name, part.consumer, channels, operations, sorted(part.receives, key=message_name))
    result: dict[str, Any] = {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {"title": title, "version": version, "description": description or _DESCRIPTION},
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {"schemas": dict(sorted(schemas.items())), "messages": messages},
    }
    return result


def service_document(
    name: str, roles: Iterable[object], *, title: str, version: str = "0.1.0", topology: Topology | None = None
) -> dict[str, Any]:
    """One service's part of the document: what it sends and what it receives, and its queues."""
    return document([service_events(name, roles)], title=f"{title} events", version=version, topology=topology)


def _operation(action: str, event: type[DomainEvent], summary: str, service: str) -> dict[str, Any]:
    channel = event.routing_key()
    message = message_name(event)
    return {
        "action": action,
        "channel": {"$ref": f"#/channels/{_pointer(channel)}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{_pointer(channel)}/messages/{message}"}],
        "x-fastmicro-service": service,
    }


def _queues(
    service: str,
    consumer: EventConsumer[Any],
    channels: dict[str, Any],
    operations: dict[str, Any],
    receives: Sequence[type[DomainEvent]],
) -> None:
    """A consumer's queue, its delay queues and its dead-letter queue, and how messages reach them."""
    refs = [{"$ref": f"#/components/messages/{message_name(event)}"} for event in receives]
    delays = dict(zip(consumer.retry_queue_names, consumer.handling.retry_delays, strict=True))
    described = {
        consumer.queue_name: f"{service}'s queue, bound to the routing keys it subscribes to: "
        + ", ".join(f"`{key}`" for key in consumer.routing_keys)
        + ".",
        **{
            queue: f"Delay queue: a failed message waits {delay:g} s here (TTL), then dead-letters back into "
            f"`{consumer.queue_name}`; the attempt is in the header `x-fastmicro-attempt`."
            for queue, delay in delays.items()
        },
        consumer.dead_queue_name: f"{service}'s dead-letter queue: what cannot be handled, with the reason in "
        "`x-fastmicro-dead-reason` (see docs/events.md, Dead letters).",
    }
    for queue, description in described.items():
        channels[queue] = {
            "address": queue,
            "title": queue,
            "description": description,
            "messages": {ref["$ref"].rsplit("/", 1)[1]: ref for ref in refs},
            "bindings": {
                "amqp": {
                    "is": "queue",
                    "queue": {"name": queue, "durable": True, "exclusive": False, "autoDelete": False, "vhost": "/"},
                    "bindingVersion": _AMQP_BINDING,
                }
            },
        }
        if queue == consumer.queue_name:
            continue
        kind = "deadLetter" if queue == consumer.dead_queue_name else f"retry.{queue.rsplit('.', 1)[1]}"
        operations[f"{service}.{kind}"] = {
            "action": "send",
            "channel": {"$ref": f"#/channels/{_pointer(queue)}"},
            "summary": f"{service}'s consumer moves a message here: {description.split(':', 1)[0].lower()}.",
            "x-fastmicro-service": service,
        }


def _pointer(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


_DESCRIPTION = (
    "The events of fastmicro (docs/contract.md): persistent JSON messages on the topic exchange "
    "`fastmicro.events`, routing key `<source>.<Type>`, AMQP `message_id` = envelope `id`, `type` = envelope "
    "`type`. Delivery is at least once; every consumer is idempotent on `id`. Generated from the code by "
    "`make generate` (tools/events.py): edit the event classes and SUBSCRIPTIONS, never this."
)
