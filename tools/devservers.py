"""Where `make dev` finds PostgreSQL and RabbitMQ, and which source it chose for each.

For each server, in this order:
1. **answering**: something accepts connections at its URL (local, or named by DEV_POSTGRES_URL /
   AMQP_URL, or TEST_DATABASE_URL / TEST_AMQP_URL for the tests);
2. **local installation**: on this machine but stopped, so started (pg_ctlcluster on Debian and
   Ubuntu, `brew services` on macOS, rabbitmq-server) and waited for;
3. **container**: the docker-compose.yml service of the same name (same image and version as
   `make up`), when a Docker engine answers: Compose project `fastmicro-dev`, so its named volumes
   are not `make up`'s, ports published on loopback by tools/docker-compose.dev.yml, Mailpit beside
   them; stopped on exit unless kept;
4. **missing**: the one command that installs them for this OS (apt, brew), run with `--install`.

`python tools/devservers.py` (`make servers`, before the tests) tries the first two only: the test
fixtures start containers of their own.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values

ROOT = Path(__file__).resolve().parents[1]
#: The Compose project of `make dev`'s containers: its volumes are `fastmicro-dev_postgres-data`, ...
COMPOSE_PROJECT = "fastmicro-dev"
DEV_COMPOSE_FILE = "tools/docker-compose.dev.yml"
MAILPIT_UI = "http://127.0.0.1:8025"
RABBITMQ_UI_PORT = 15672
_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Source(StrEnum):
    ANSWERING = "answering"
    LOCAL = "local installation"
    CONTAINER = "container"
    MISSING = "missing"


@dataclass(frozen=True)
class Server:
    """A server `make dev` needs, and where it is expected to answer."""

    name: str  #: as people call it: PostgreSQL
    compose_service: str  #: its service in docker-compose.yml
    url: str
    default_port: int
    apt_package: str
    brew_formula: str

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or self.default_port

    @property
    def is_local(self) -> bool:
        return self.host in _LOCAL_HOSTS

    def where(self) -> str:
        return f"{self.host}:{self.port}"


def postgres(url: str) -> Server:
    return Server("PostgreSQL", "postgres", url, 5432, "postgresql", "postgresql@17")


def rabbitmq(url: str) -> Server:
    return Server("RabbitMQ", "rabbitmq", url, 5672, "rabbitmq-server", "rabbitmq")


@dataclass(frozen=True)
class Choice:
    """The source chosen for one server, the URL it answers at, and what was done to get it."""

    server: Server
    source: Source
    url: str
    detail: str

    def line(self) -> str:
        return f"{self.server.name}: {self.source} ({self.detail})"


def _run(argv: Sequence[str], env: dict[str, str] | None) -> int:
    completed = subprocess.run(  # noqa: S603 - argv lists of this module's own
        list(argv), env=None if env is None else {**os.environ, **env}, check=False, stdout=sys.stderr
    )
    return completed.returncode


@dataclass
class Machine:
    """What selection asks of this machine, each part replaceable so a test can choose what is present."""

    path: str | None = None  #: where executables are looked up (default: PATH)
    postgres_clusters: Path = Path("/etc/postgresql")  #: Debian's cluster folders, by version
    os_release: Path = Path("/etc/os-release")
    system: str = field(default_factory=platform.system)
    root: Path = ROOT
    #: runs a command (with variables added to the environment) and gives its exit status
    run: Callable[[Sequence[str], dict[str, str] | None], int] = _run

    def which(self, name: str) -> str | None:
        return shutil.which(name, path=self.path)

    def succeeds(self, argv: Sequence[str]) -> bool:
        """Whether a question put to a tool (`docker info`) is answered yes; its output unshown."""
        executable = self.which(argv[0])
        if executable is None:
            return False
        answer = subprocess.run([executable, *argv[1:]], capture_output=True, check=False, timeout=30)  # noqa: S603
        return answer.returncode == 0

    def docker_answers(self) -> bool:
        return self.succeeds(["docker", "info", "--format", "{{.ServerVersion}}"])


def answers(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout):
            return True
    except OSError:
        return False


def wait_until_answers(server: Server, within: float, host: str | None = None, port: int | None = None) -> bool:
    """Whether the server answers within `within` seconds: what a start command promises, bounded."""
    deadline = time.monotonic() + within
    while not answers(host or server.host, port or server.port):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.2)
    return True


def local_start(server: Server, machine: Machine) -> list[str] | None:
    """The command that starts the local installation of `server`, or None when it is not installed here."""
    if server.compose_service == "postgres":
        if machine.which("pg_ctlcluster") and machine.postgres_clusters.is_dir():
            versions = sorted(path.name for path in machine.postgres_clusters.iterdir() if path.is_dir())
            if versions:
                return ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"]
    elif machine.which("rabbitmq-server"):
        return ["rabbitmq-server", "-detached"]
    if machine.system == "Darwin" and machine.succeeds(["brew", "list", "--versions", server.brew_formula]):
        return ["brew", "services", "start", server.brew_formula]
    return None


def compose_base(machine: Machine) -> list[str]:
    """`docker compose` over docker-compose.yml and the dev overlay, as project fastmicro-dev."""
    env_file = machine.root / ".env"
    return [
        "docker",
        "compose",
        "--project-name",
        COMPOSE_PROJECT,
        "--project-directory",
        str(machine.root),
        "--file",
        str(machine.root / "docker-compose.yml"),
        "--file",
        str(machine.root / DEV_COMPOSE_FILE),
        "--env-file",
        str(env_file if env_file.is_file() else machine.root / ".env.example"),
    ]


def compose_up(servers: Sequence[Server], machine: Machine, smtp_port: int) -> tuple[list[str], dict[str, str]]:
    """The command that starts `servers` and Mailpit in containers and waits until they are healthy, and its
    environment: the loopback ports tools/docker-compose.dev.yml publishes."""
    names = [server.compose_service for server in servers]
    ports = {f"DEV_{server.compose_service.upper()}_PORT": str(server.port) for server in servers}
    env = {"DEV_POSTGRES_PORT": "5432", "DEV_RABBITMQ_PORT": "5672", **ports, "DEV_SMTP_PORT": str(smtp_port)}
    return [*compose_base(machine), "up", "--detach", "--wait", *names, "mailpit"], env


def compose_stop(servers: Sequence[Server], machine: Machine) -> list[str]:
    """What stops the containers `compose_up` started for `servers`, and no other (a kept one answered)."""
    return [*compose_base(machine), "stop", *(server.compose_service for server in servers), "mailpit"]


def container_url(server: Server, machine: Machine) -> str:
    """The URL of `server`'s container: the credentials docker-compose.yml gives it (from .env, else
    .env.example), at the loopback port it is published on."""
    env_file = machine.root / ".env"
    values = dotenv_values(env_file if env_file.is_file() else machine.root / ".env.example")
    if server.compose_service == "postgres":
        return f"postgresql://postgres:{values.get('POSTGRES_PASSWORD', '')}@127.0.0.1:{server.port}/postgres"
    return f"amqp://{values.get('RABBITMQ_USER', '')}:{values.get('RABBITMQ_PASSWORD', '')}@127.0.0.1:{server.port}/"


def install_command(servers: Sequence[Server], machine: Machine) -> list[str] | None:
    """The one command that installs `servers` on this OS, or None where the project knows none."""
    if machine.system == "Darwin":
        return ["brew", "install", *(server.brew_formula for server in servers)]
    if machine.system == "Linux" and _debian_like(machine.os_release):
        sudo = [] if os.geteuid() == 0 else ["sudo"]
        return [*sudo, "apt-get", "install", "--yes", *(server.apt_package for server in servers)]
    return None


def _debian_like(os_release: Path) -> bool:
    if not os_release.is_file():
        return False
    values = dotenv_values(os_release)
    family = f"{values.get('ID', '')} {values.get('ID_LIKE', '')}".split()
    return bool({"debian", "ubuntu"} & set(family))


@dataclass
class Selection:
    """The choice for each server, and what to undo on exit."""

    choices: list[Choice]
    mailpit: bool = False  #: Mailpit runs beside the containers: the stack's mail goes there
    stop: list[str] | None = None  #: the command that stops the containers started, if any
    problems: list[str] = field(default_factory=list)

    def url(self, name: str) -> str:
        return next(choice.url for choice in self.choices if choice.server.compose_service == name)

    @property
    def rabbitmq_ui(self) -> str | None:
        """The management UI: the container's, or a local broker's when its plugin answers."""
        broker = next(choice for choice in self.choices if choice.server.compose_service == "rabbitmq")
        if broker.source is Source.MISSING or not answers(broker.server.host, RABBITMQ_UI_PORT, 0.3):
            return None
        return f"http://{broker.server.host}:{RABBITMQ_UI_PORT}"


def select(
    servers: Sequence[Server],
    machine: Machine,
    *,
    containers: bool = True,
    install: bool = False,
    smtp_port: int = 1025,
    within: float = 120.0,
    say: Callable[[str], None] = lambda line: None,
) -> Selection:
    """Find a source for each server, in the order of the module's docstring, starting what must be started.

    `within` bounds the wait for a server that was started; `containers=False` stops at the local
    installations (the tests' servers), `install=True` runs the install command for what is missing.
    """
    choices: dict[str, Choice] = {}
    selection = Selection([])
    for server in servers:
        if answers(server.host, server.port):
            choices[server.name] = Choice(server, Source.ANSWERING, server.url, f"on {server.where()}")
        elif server.is_local and (command := local_start(server, machine)):
            if started := _start_local(server, command, machine, within):
                choices[server.name] = started
            else:
                silent = f"`{shlex.join(command)}` ran but nothing answers on {server.where()} within {within:g} s"
                selection.problems.append(f"{server.name}: {silent}")
    pending = [server for server in servers if server.name not in choices]
    if pending and containers and machine.docker_answers():
        choices.update(_start_containers(pending, machine, smtp_port, selection))
    pending = [server for server in servers if server.name not in choices]
    if pending:
        installer = install_command(pending, machine)
        if install and installer is not None:
            say(f"installing {', '.join(server.name for server in pending)}: {shlex.join(installer)}")
            if machine.run(installer, None) == 0:
                return _after_install(
                    servers, choices=choices, selection=selection, machine=machine, within=within, say=say
                )
            selection.problems.append(f"`{shlex.join(installer)}` failed")
        for server in pending:
            choices[server.name] = Choice(server, Source.MISSING, server.url, _missing(server, installer, containers))
    selection.choices = [choices[server.name] for server in servers]
    return selection


def _start_containers(
    pending: Sequence[Server], machine: Machine, smtp_port: int, selection: Selection
) -> dict[str, Choice]:
    command, env = compose_up(pending, machine, smtp_port)
    if machine.run([machine.which(command[0]) or command[0], *command[1:]], env) != 0:
        selection.problems.append(f"`{shlex.join(command)}` failed")
        return {}
    selection.mailpit = True
    selection.stop = compose_stop(pending, machine)
    where = f"of Compose project {COMPOSE_PROJECT}"
    return {
        server.name: Choice(
            server,
            Source.CONTAINER,
            container_url(server, machine),
            f"compose service {server.compose_service} {where}, on {server.where()}",
        )
        for server in pending
    }


def _after_install(
    servers: Sequence[Server],
    *,
    choices: dict[str, Choice],
    selection: Selection,
    machine: Machine,
    within: float,
    say: Callable[[str], None],
) -> Selection:
    """Once installed, the servers are local installations: the package may have started them, or not yet."""
    again = select(
        [server for server in servers if server.name not in choices], machine, containers=False, within=within, say=say
    )
    choices.update({choice.server.name: choice for choice in again.choices})
    problems = [*selection.problems, *again.problems]
    return replace(selection, choices=[choices[server.name] for server in servers], problems=problems)


def _start_local(server: Server, command: list[str], machine: Machine, within: float) -> Choice | None:
    executable = machine.which(command[0]) or command[0]
    machine.run([executable, *command[1:]], None)  # "already running" is not a failure; answering is what counts
    if not wait_until_answers(server, within):
        return None
    return Choice(server, Source.LOCAL, server.url, f"started with `{shlex.join(command)}`, on {server.where()}")


def _missing(server: Server, installer: list[str] | None, containers: bool) -> str:
    how = (
        f"install it with `{shlex.join(installer)}` (or `make dev INSTALL=1` runs that)"
        if installer is not None
        else f"install {server.name} with this system's package manager"
    )
    if not containers:
        return f"nothing answers on {server.where()} and it is not installed here: {how}"
    variable = "DEV_POSTGRES_URL" if server.compose_service == "postgres" else "AMQP_URL"
    return (
        f"nothing answers on {server.where()}, it is not installed here and no Docker engine answers: "
        f"{how}, or start a Docker engine, or name a running {server.name} in {variable}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--postgres", default=os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
    )
    parser.add_argument("--amqp", default=os.environ.get("TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"))
    args = parser.parse_args(argv)
    servers = [postgres(args.postgres), rabbitmq(args.amqp)]
    selection = select(servers, Machine(), containers=False)
    for choice in selection.choices:
        print(f"servers: {choice.line()}", file=sys.stderr)  # noqa: T201
    # Missing servers are not an error here: the test fixtures fall back to containers, or skip.
    return 0


if __name__ == "__main__":
    sys.exit(main())
