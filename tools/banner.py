"""What a person needs once the stack is up: each service's URL and docs, where the mail goes, the
RabbitMQ UI, where the logs go and how to stop. `make dev` prints it when every service is ready;
`make up` prints the same lines for the containers (tools/workspace.py writes them into the Makefile).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from fastmicro.workspace import ServiceManifest


@dataclass(frozen=True)
class Where:
    """What differs between the stacks: the rest comes from the services' manifests."""

    host: str  #: where the services answer
    mail: str  #: where the mail the stack sends can be read
    rabbitmq_ui: str | None  #: the management UI, where there is one
    logs: str
    stop: str
    port_offset: int = 0
    #: Further (name, text) rows: the trace viewer and dashboards `make up` runs.
    extras: tuple[tuple[str, str], ...] = ()


def compose_where() -> Where:
    """`make up`: the containers of docker-compose.yml, their ports on loopback."""
    return Where(
        host="localhost",
        mail="Mailpit http://localhost:8025 (every mail the stack sends)",
        rabbitmq_ui="http://localhost:15672 (RABBITMQ_USER / RABBITMQ_PASSWORD in .env)",
        logs="make logs (make logs ARGS=orders for one service); make ps for their health",
        stop="make down (the data volumes stay)",
        extras=(
            ("traces", "Jaeger http://localhost:16686"),
            ("dashboards", "Grafana http://localhost:3000 (the fastmicro dashboard)"),
            ("metrics", "Prometheus http://localhost:9090 (every API and worker, the alert rules)"),
        ),
    )


def banner(services: Sequence[ServiceManifest], where: Where) -> list[str]:
    width = max(len("RabbitMQ UI"), *(len(service.name) for service in services))
    rows = [
        (service.name, f"{url}  (docs: {url}/docs)")
        for service in services
        for url in (f"http://{where.host}:{service.port + where.port_offset}",)
    ]
    rows.append(("mail", where.mail))
    if where.rabbitmq_ui is not None:
        rows.append(("RabbitMQ UI", where.rabbitmq_ui))
    rows += [*where.extras, ("logs", where.logs), ("stop", where.stop)]
    return [f"  {name:<{width}}  {text}" for name, text in rows]
