"""The committed event schemas and docs/asyncapi.yaml: fresh, valid AsyncAPI 3, and never broken for a reader.

`tools/events.py --check` is the gate: it fails when docs/asyncapi.yaml or a schema under
libs/contracts/schemas/ is stale, and when a class changed a published version in a way that breaks a
reader of it (fastmicro.compatibility), naming the rule and the consuming services.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

import fastmicro_contracts.orders
import fastmicro_contracts.users
from fastmicro.asyncapi import message_name
from fastmicro.events import DomainEvent, Envelope, registry
from fastmicro.workspace import find_root

ROOT = find_root(Path(__file__))
SCHEMAS = ROOT / "libs" / "contracts" / "schemas"
ASYNCAPI_SCHEMA = ROOT / "tools" / "schemas" / "asyncapi-3.0.0.json"

EVENTS: list[type[DomainEvent]] = [
    value
    for module in (fastmicro_contracts.users, fastmicro_contracts.orders)
    for value in vars(module).values()
    if isinstance(value, type) and issubclass(value, DomainEvent) and "type" in vars(value)
]


def test_the_generated_files_are_fresh_and_no_published_version_is_broken() -> None:
    result = subprocess.run(  # noqa: S603 - the project's own generator
        [sys.executable, str(ROOT / "tools" / "events.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, f"run `make generate` (a breaking change needs a new version):\n{result.stderr}"


@pytest.mark.parametrize(
    ("committed_path", "breaks", "next_version"),
    [
        (
            "users/UserCreated.v1.schema.json",
            "UserCreated.v1 (libs/contracts/schemas/users/UserCreated.v1.schema.json) would break its readers "
            "(notifications): field removed or renamed at data.nickname",
            2,
        ),
        (  # no longer sent, still read: notifications upcasts what is queued or dead-lettered
            "orders/OrderPlaced.v1.schema.json",
            "OrderPlaced.v1 (libs/contracts/schemas/orders/OrderPlaced.v1.schema.json) would break its readers "
            "(notifications): field removed or renamed at data.nickname",
            3,
        ),
    ],
    ids=["UserCreated.v1", "OrderPlaced.v1-read-through-its-upcaster"],
)
def test_a_change_that_breaks_a_reader_fails_naming_the_rule_and_the_consumers(
    tmp_path: Path, committed_path: str, breaks: str, next_version: int
) -> None:
    """As if the version had lost `nickname`: the committed schema has it, the class no longer."""
    manifests = [path.relative_to(ROOT).as_posix() for path in ROOT.glob("services/*/pyproject.toml")]
    for path in ("docs/events.md", "libs/contracts/schemas", *manifests):
        source, target = ROOT / path, tmp_path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    committed = tmp_path / "libs/contracts/schemas" / committed_path
    schema = json.loads(committed.read_text())
    schema["properties"]["data"]["properties"]["nickname"] = {"type": "string"}
    schema["properties"]["data"]["required"].append("nickname")
    committed.write_text(json.dumps(schema))

    result = subprocess.run(  # noqa: S603 - the project's own generator
        [sys.executable, str(ROOT / "tools" / "events.py"), "--root", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert breaks in result.stderr
    assert f"version = {next_version}, and an upcaster to it" in result.stderr  # the next free version
    assert json.loads(committed.read_text()) == schema  # `make generate` leaves the promise as it was


def asyncapi_errors(document: dict[str, Any]) -> list[str]:
    """What the AsyncAPI 3.0 JSON Schema (vendored, offline) refuses, and every `$ref` that leads nowhere."""
    validator = jsonschema.Draft7Validator(json.loads(ASYNCAPI_SCHEMA.read_text()))
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}" for e in validator.iter_errors(document)]

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target: Any = document
                for part in ref.removeprefix("#/").split("/"):
                    key = part.replace("~1", "/").replace("~0", "~")
                    if not isinstance(target, dict) or key not in target:
                        errors.append(f"unresolved $ref {ref}")
                        break
                    target = target[key]
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document)
    return errors


def test_docs_asyncapi_yaml_is_a_valid_asyncapi_3_document() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    assert document["asyncapi"] == "3.0.0"
    assert asyncapi_errors(document) == []


def test_the_validator_refuses_what_is_not_asyncapi() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    first = next(iter(document["operations"]))
    document["operations"][first]["action"] = "publish"  # AsyncAPI 2's word: not 3's
    document["operations"][first]["channel"] = {"$ref": "#/channels/nowhere"}
    errors = asyncapi_errors(document)
    assert any(error.startswith(f"operations/{first}") for error in errors)
    assert "unresolved $ref #/channels/nowhere" in errors


def test_every_event_version_is_in_the_document_with_its_sender_and_receivers() -> None:
    document = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
    operations = document["operations"]
    newest = registry.newest()
    for event in EVENTS:
        name = message_name(event)
        assert name in document["components"]["messages"]
        assert name in document["channels"][event.routing_key()]["messages"]
        # A producer sends the newest version only; an older one is still read, through its upcaster.
        assert (f"{event.source}.send.{name}" in operations) == (event in newest), name
    assert "orders.receive.UserDeleted.v1" in operations
    assert "notifications.receive.OrderPlaced.v2" in operations
    assert "upcast to v2" in operations["notifications.receive.OrderPlaced.v1"]["summary"]
    assert "users.receive.UserCreated.v1" not in operations
    assert document["channels"]["orders.events.dead"]["address"] == "orders.events.dead"
    assert "notifications.events.retry.1000ms" in document["channels"]


@pytest.mark.parametrize("event", EVENTS, ids=message_name)
def test_each_version_has_its_schema_and_an_example_both_it_and_the_class_accept(event: type[DomainEvent]) -> None:
    folder = SCHEMAS / event.source
    schema = json.loads((folder / f"{message_name(event)}.schema.json").read_text())
    example = json.loads((folder / f"{message_name(event)}.example.json").read_text())
    jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker()).validate(example)
    envelope = Envelope.model_validate(example)
    assert (envelope.type, envelope.version, envelope.source) == (event.type, event.version, event.source)
    event.model_validate(envelope.data)


def test_the_schema_refuses_what_the_class_refuses() -> None:
    from fastmicro_contracts.users import UserCreated  # noqa: PLC0415 - the one this test is about

    schema = json.loads((SCHEMAS / "users" / "UserCreated.v1.schema.json").read_text())
    example = json.loads((SCHEMAS / "users" / "UserCreated.v1.example.json").read_text())
    del example["data"]["name"]
    with pytest.raises(jsonschema.ValidationError, match="'name' is a required property"):
        jsonschema.Draft202012Validator(schema).validate(example)
    with pytest.raises(ValueError, match="name"):
        UserCreated.model_validate(example["data"])
