"""The services of the workspace, each as its own folder declares it: `[tool.fastmicro]` in its pyproject.

Every list of services (make dev, the test stacks, docker-compose.yml, the Kubernetes manifests,
the database init script) is read from here or generated from it (tools/workspace.py), so adding
a service is adding its folder. What a service publishes and consumes is not declared here: its
event classes and its SUBSCRIPTIONS say it.
"""

from __future__ import annotations

import functools
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: What a service's worker may run, by the kind the kernel gives each background role.
ROLE_KINDS = ("relay", "consumer", "sender", "retention")
_NAME = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")


class ManifestError(ValueError):
    """A service's `[tool.fastmicro]` table is missing, or says something the tools cannot use."""


@dataclass(frozen=True)
class ServiceManifest:
    """What makes a service itself, from `services/<name>/pyproject.toml`."""

    name: str  #: the project's name: its package, its CLI (`python -m <name>`), its image and its queue prefix
    description: str
    port: int  #: its HTTP port, in make dev, Docker Compose and Kubernetes alike
    roles: tuple[str, ...]  #: what its worker runs (checked against its code by deploy/tests/test_workspace.py)
    signs_tokens: bool = False  #: holds the private JWT signing key (users alone should)
    sends_mail: bool = False  #: talks SMTP: the mail server's settings and login are given to it
    api_memory: tuple[str, str] = ("192Mi", "512Mi")  #: the API pod's memory request and limit on Kubernetes

    @property
    def database(self) -> str:
        """The PostgreSQL database, and role, it owns: its name."""
        return self.name

    @property
    def env_prefix(self) -> str:
        """The prefix of its variables in .env (`ORDERS_DB_PASSWORD`)."""
        return self.name.upper()

    @property
    def consumes(self) -> bool:
        return "consumer" in self.roles

    @property
    def publishes(self) -> bool:
        return "relay" in self.roles


def find_root(start: Path | None = None) -> Path:
    """The workspace root: the nearest folder at or above `start` (by default the working directory, then
    this file's) whose pyproject is a uv workspace."""
    starts = [start] if start is not None else [Path.cwd(), Path(__file__)]
    for begin in starts:
        for folder in [begin.resolve(), *begin.resolve().parents]:
            pyproject = folder / "pyproject.toml"
            if pyproject.is_file() and "workspace" in _read(pyproject).get("tool", {}).get("uv", {}):
                return folder
    raise ManifestError(f"no uv workspace above {' or '.join(map(str, starts))}")


def services(root: Path | None = None) -> tuple[ServiceManifest, ...]:
    """Every service under `root` (by default the workspace's)/services, in the order of their ports."""
    return _services(find_root() if root is None else root.resolve())


@functools.cache
def _services(root: Path) -> tuple[ServiceManifest, ...]:
    found = [manifest(path) for path in sorted((root / "services").glob("*/pyproject.toml"))]
    ports: dict[int, str] = {}
    for service in found:
        if service.port in ports:
            raise ManifestError(f"{service.name} and {ports[service.port]} both declare port {service.port}")
        ports[service.port] = service.name
    return tuple(sorted(found, key=lambda service: service.port))


def manifest(pyproject: Path) -> ServiceManifest:
    """The manifest of the service whose pyproject is `pyproject`."""
    data = _read(pyproject)
    name = data.get("project", {}).get("name")
    table: dict[str, Any] | None = data.get("tool", {}).get("fastmicro")
    where = pyproject.as_posix()
    if not isinstance(name, str) or not _NAME.match(name):
        raise ManifestError(f"{where}: [project] name must be a lower-case Python package name, not {name!r}")
    if name != pyproject.parent.name:
        raise ManifestError(f"{where}: the project is named {name!r} but its folder {pyproject.parent.name!r}")
    if table is None:
        raise ManifestError(f"{where}: no [tool.fastmicro] table (port, roles): the tools cannot place {name}")
    unknown = set(table) - {"port", "roles", "signs-tokens", "sends-mail", "api-memory"}
    if unknown:
        raise ManifestError(f"{where}: [tool.fastmicro] has unknown keys {sorted(unknown)}")
    port = table.get("port")
    if not isinstance(port, int) or not 1024 <= port <= 65535:
        raise ManifestError(f"{where}: [tool.fastmicro] port must be a number from 1024 to 65535, not {port!r}")
    roles = table.get("roles", [])
    if not isinstance(roles, list) or not roles or not set(roles) <= set(ROLE_KINDS):
        raise ManifestError(f"{where}: [tool.fastmicro] roles must be a non-empty list of {ROLE_KINDS}, not {roles!r}")
    memory = table.get("api-memory", ["192Mi", "512Mi"])
    return ServiceManifest(
        name=name,
        description=str(data["project"].get("description", "")),
        port=port,
        roles=tuple(roles),
        signs_tokens=bool(table.get("signs-tokens", False)),
        sends_mail=bool(table.get("sends-mail", False)),
        api_memory=(str(memory[0]), str(memory[1])),
    )


def _read(path: Path) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)
