"""What docs/*.md say about the code, checked against it: commands, metrics, queue names, server versions."""

from __future__ import annotations

import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml

from fastmicro.consumer import EventConsumer
from fastmicro.messaging import Broker, Topology
from fastmicro.testing.servers import POSTGRES_IMAGE, RABBITMQ_IMAGE
from fastmicro.uow import UnitOfWork

ROOT = Path(__file__).resolve().parents[3]
DOCS = sorted((ROOT / "docs").glob("*.md"))
SERVICES = sorted(path.name for path in (ROOT / "services").iterdir() if (path / "pyproject.toml").exists())
SOURCES = [*ROOT.glob("libs/*/src/**/*.py"), *ROOT.glob("services/*/src/**/*.py")]


def docs_text() -> str:
    return "\n".join(path.read_text() for path in DOCS)


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


@cache
def commands_of(service: str) -> frozenset[str]:
    """The commands `python -m <service> --help` lists."""
    answer = subprocess.run(  # noqa: S603 - this interpreter, a service of this repository
        [sys.executable, "-m", service, "--help"], capture_output=True, text=True, check=True, timeout=60
    )
    found = re.search(r"\{([a-z,-]+)\}", answer.stdout)
    assert found, answer.stdout
    return frozenset(found.group(1).split(","))


def test_every_documented_command_list_is_the_whole_command_set() -> None:
    """`python -m <service> a|b|c` in the docs names every command each service has, and no other."""
    lists = re.findall(r"python -m <?[a-z]+>? ((?:[a-z-]+\\?\|)+[a-z-]+)", docs_text())
    assert lists, "the docs name the commands somewhere"
    for service in SERVICES:
        for listed in lists:
            assert set(listed.replace("\\", "").split("|")) == commands_of(service), (service, listed)


def test_every_documented_command_exists() -> None:
    commands = frozenset.union(*(commands_of(service) for service in SERVICES))
    named = set(re.findall(r"python -m (?:<[a-z]+>|<svc>|" + "|".join(SERVICES) + r") ([a-z-]+)\b", docs_text()))
    assert named, "the docs name commands"
    assert named <= commands, named - commands


def metrics_in_code() -> set[str]:
    pattern = re.compile(r"\b(?:Counter|Gauge|Histogram|Summary)\(\s*\"([a-z_:][a-z0-9_:]*)\"")
    return {name for path in SOURCES for name in pattern.findall(path.read_text())}


def test_the_metrics_documented_are_the_metrics_the_code_exports() -> None:
    code = metrics_in_code()
    operations = (ROOT / "docs" / "operations.md").read_text()
    documented = {
        name
        for path in DOCS
        if path.name != "contract.md"  # the HTTP contract's JSON fields (`line_total`) are not metrics
        for span in code_spans(path.read_text())
        for name in re.findall(r"\b[a-z][a-z0-9]*(?:_[a-z0-9]+)*_(?:total|seconds)\b", span)
    }
    assert {"http_requests_total", "consumer_messages_total"} <= code
    assert documented <= code, documented - code  # no name the code does not export
    assert not [name for name in code if f"`{name}`" not in operations], "every metric listed in operations.md"


def test_the_retry_queue_names_are_written_as_the_consumer_names_them() -> None:
    consumer: EventConsumer[UnitOfWork] = EventConsumer(
        Broker("amqp://unused", Topology()),
        service="orders",
        subscriptions=[],
        uow_factory=lambda: pytest.fail("never called"),
        retry_delays=[1.0],
    )
    assert consumer.retry_queue_names == ["orders.events.retry.1000ms"]
    for span in code_spans(docs_text()):
        for name in re.findall(r"\.retry\.\S*", span):
            assert re.fullmatch(r"\.retry\.(?:<ms>|\d+)ms", name), span


def test_the_test_servers_run_the_versions_ci_and_compose_run() -> None:
    ci = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = ci["jobs"]["test"]["services"]
    assert (services["postgres"]["image"], services["rabbitmq"]["image"]) == (POSTGRES_IMAGE, RABBITMQ_IMAGE)
    assert (compose["services"]["postgres"]["image"], compose["services"]["rabbitmq"]["image"]) == (
        POSTGRES_IMAGE,
        RABBITMQ_IMAGE,
    )
    for image in (POSTGRES_IMAGE, RABBITMQ_IMAGE):
        name, version = image.split(":")[0], image.split(":")[1].split("-")[0]
        what = {"postgres": "PostgreSQL", "rabbitmq": "RabbitMQ"}[name]
        assert f"{what} {version}" in docs_text(), f"the docs say {what} {version}"


def test_the_docs_link_to_files_that_exist() -> None:
    for path in DOCS:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", path.read_text()):
            assert (path.parent / target).exists(), f"{path.name} links to {target}"
        assert "CONTRACT.md" not in path.read_text(), f"{path.name}: the contract is docs/contract.md"
