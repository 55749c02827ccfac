"""The banner (tools/banner.py): the same facts for `make dev` and `make up`, from the services' manifests."""

from __future__ import annotations

from pathlib import Path

from banner import Where, banner, compose_where

from fastmicro.workspace import services

ROOT = Path(__file__).resolve().parents[2]


def test_each_service_is_listed_with_its_url_and_docs_at_its_port() -> None:
    found = services(ROOT)
    where = Where(host="127.0.0.1", mail="sink", rabbitmq_ui=None, logs="here", stop="Ctrl-C", port_offset=100)
    lines = banner(found, where)
    for service, line in zip(found, lines, strict=False):
        url = f"http://127.0.0.1:{service.port + 100}"
        assert line.split() == [service.name, url, "(docs:", f"{url}/docs)"]
    assert [line.split()[0] for line in lines[len(found) :]] == ["mail", "logs", "stop"]  # no UI: no line


def test_make_up_prints_the_compose_banner() -> None:
    """The Makefile's lines are generated from it (tools/workspace.py; `make lint` fails when stale)."""
    makefile = (ROOT / "Makefile").read_text()
    for line in banner(services(ROOT), compose_where()):
        assert f"\t@echo '{line}'\n" in makefile
    assert "RabbitMQ UI" in makefile
