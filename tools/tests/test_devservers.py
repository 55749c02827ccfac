"""Where `make dev` finds its servers (tools/devservers.py), with each source present or absent.

Every test points the selection at loopback ports where nothing answers, unless it makes
something answer there itself, and at a folder of executables of its own instead of PATH: the
installations and the Docker engine it sees are the ones the test put there. The shared servers
on 5432 and 5672 are never touched.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from devservers import (
    COMPOSE_PROJECT,
    ROOT,
    Machine,
    Server,
    Source,
    compose_up,
    postgres,
    rabbitmq,
    select,
)

from fastmicro.testing.ports import free_port_base
from fastmicro.testing.servers import POSTGRES_IMAGE, RABBITMQ_IMAGE

#: A TCP listener as a process of its own, as a started server is: `python LISTENER <port> <pidfile>`.
LISTENER = """
import os, signal, socket, sys
with open(sys.argv[2], "a") as pids:  # before it answers: a test that saw it answer can stop it
    pids.write(f"{os.getpid()}\\n")
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", int(sys.argv[1])))
server.listen()
signal.alarm(120)  # never outlives the test for long, whatever becomes of the test's own stop
signal.pause()
"""


class Bin:
    """A folder of fake executables, the only PATH the selection sees; each records how it was called."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.calls = folder / "calls.jsonl"
        self.pids = folder / "listeners.pid"
        self.listener = folder / "listener.py"
        self.listener.write_text(LISTENER)

    def add(self, name: str, script: str = "") -> None:
        """`name` as a shell script that records its argv (and the DEV_* ports it was given), then runs `script`."""
        record = (
            f'{shlex.quote(sys.executable)} -c "import json, os, sys; '
            'print(json.dumps({\\"argv\\": sys.argv[1:], \\"env\\": {k: v for k, v in os.environ.items() '
            'if k.startswith(\\"DEV_\\")}}))" '
            f'"$0" "$@" >> {shlex.quote(str(self.calls))}'
        )
        path = self.folder / name
        path.write_text(f"#!/bin/sh\n{record}\n{script}\n")
        path.chmod(0o755)

    def listen(self, port: str) -> str:
        """Shell that starts a listener on `port` in the background, as a server's start command does."""
        return f"{shlex.quote(sys.executable)} {shlex.quote(str(self.listener))} {port} {shlex.quote(str(self.pids))} &"

    def called(self) -> list[dict[str, object]]:
        if not self.calls.exists():
            return []
        return [json.loads(line) for line in self.calls.read_text().splitlines()]

    def argvs(self) -> list[list[str]]:
        return [[Path(str(call["argv"][0])).name, *call["argv"][1:]] for call in self.called()]  # type: ignore[index]

    def stop_listeners(self) -> None:
        if self.pids.exists():
            for pid in self.pids.read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGTERM)


@pytest.fixture
def fake_bin(tmp_path: Path) -> Iterator[Bin]:
    folder = tmp_path / "bin"
    folder.mkdir()
    found = Bin(folder)
    yield found
    found.stop_listeners()


@pytest.fixture
def ports() -> tuple[int, int]:
    """Two loopback ports where nothing answers: PostgreSQL's and RabbitMQ's for this test."""
    base = free_port_base((0, 1))
    return base, base + 1


def servers(ports: tuple[int, int]) -> list[Server]:
    return [
        postgres(f"postgresql://postgres@127.0.0.1:{ports[0]}/postgres"),
        rabbitmq(f"amqp://guest:guest@127.0.0.1:{ports[1]}/"),
    ]


def machine(fake_bin: Bin, tmp_path: Path, *, system: str = "Linux", os_id: str = "debian") -> Machine:
    os_release = tmp_path / "os-release"
    os_release.write_text(f'ID={os_id}\nPRETTY_NAME="test"\n')
    return Machine(
        path=str(fake_bin.folder), postgres_clusters=tmp_path / "no-clusters", os_release=os_release, system=system
    )


@pytest.fixture
def listening(ports: tuple[int, int]) -> Iterator[None]:
    """Something accepts connections on both ports: the servers answer."""
    sockets = []
    for port in ports:
        server = socket.socket()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", port))
        server.listen()
        sockets.append(server)
    yield
    for server in sockets:
        server.close()


def sources(selection_choices: Sequence[object]) -> list[Source]:
    return [choice.source for choice in selection_choices]  # type: ignore[attr-defined]


@pytest.mark.usefixtures("listening")
def test_servers_that_answer_are_used_as_they_are_and_nothing_is_started(
    fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]
) -> None:
    fake_bin.add("docker")  # an engine that would answer: not asked
    fake_bin.add("rabbitmq-server")
    selection = select(servers(ports), machine(fake_bin, tmp_path))
    assert sources(selection.choices) == [Source.ANSWERING, Source.ANSWERING]
    assert selection.url("postgres") == f"postgresql://postgres@127.0.0.1:{ports[0]}/postgres"
    assert selection.choices[1].line() == f"RabbitMQ: answering (on 127.0.0.1:{ports[1]})"
    assert fake_bin.called() == []
    assert selection.stop is None
    assert not selection.mailpit


def test_stopped_local_installations_are_started_and_waited_for(
    fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]
) -> None:
    """pg_ctlcluster (Debian's, for the newest cluster) and rabbitmq-server -detached, as the start script did."""
    clusters = tmp_path / "postgresql"
    for version in ("15", "17"):
        (clusters / version).mkdir(parents=True)
    fake_bin.add("pg_ctlcluster", fake_bin.listen(str(ports[0])))
    fake_bin.add("rabbitmq-server", fake_bin.listen(str(ports[1])))
    fake_bin.add("docker")  # not asked: the installations come first
    found = machine(fake_bin, tmp_path)
    found.postgres_clusters = clusters

    selection = select(servers(ports), found, within=30)

    assert sources(selection.choices) == [Source.LOCAL, Source.LOCAL]
    assert fake_bin.argvs() == [
        ["pg_ctlcluster", "--skip-systemctl-redirect", "17", "main", "start"],
        ["rabbitmq-server", "-detached"],
    ]
    assert "started with `pg_ctlcluster --skip-systemctl-redirect 17 main start`" in selection.choices[0].line()
    assert selection.url("rabbitmq") == f"amqp://guest:guest@127.0.0.1:{ports[1]}/"


def test_an_installation_that_does_not_come_up_in_time_is_not_chosen(
    fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]
) -> None:
    fake_bin.add("rabbitmq-server")  # starts nothing
    selection = select(servers(ports)[1:], machine(fake_bin, tmp_path), within=0.5)
    assert sources(selection.choices) == [Source.MISSING]
    assert selection.problems == [
        f"RabbitMQ: `rabbitmq-server -detached` ran but nothing answers on 127.0.0.1:{ports[1]} within 0.5 s"
    ]


def test_a_local_installation_is_only_started_for_a_local_url(fake_bin: Bin, tmp_path: Path) -> None:
    fake_bin.add("rabbitmq-server")
    remote = rabbitmq("amqp://guest:guest@192.0.2.1:5672/")  # TEST-NET-1: never answers
    selection = select([remote], machine(fake_bin, tmp_path), containers=False, within=0.5)
    assert sources(selection.choices) == [Source.MISSING]
    assert fake_bin.called() == []


def test_with_nothing_installed_and_an_engine_answering_compose_starts_what_is_missing(
    fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]
) -> None:
    """docker-compose.yml's own services, project fastmicro-dev, the test's ports; Mailpit beside them."""
    listeners = f"{fake_bin.listen('$DEV_POSTGRES_PORT')} {fake_bin.listen('$DEV_RABBITMQ_PORT')}"
    up = f'case "$*" in *" up "*) {listeners} ;; esac'
    fake_bin.add("docker", up)

    selection = select(servers(ports), machine(fake_bin, tmp_path), smtp_port=2525)

    assert sources(selection.choices) == [Source.CONTAINER, Source.CONTAINER]
    info, compose = fake_bin.called()
    assert info["argv"][1:] == ["info", "--format", "{{.ServerVersion}}"]  # type: ignore[index]
    assert compose["argv"][1:] == compose_up(servers(ports), Machine(root=ROOT), 2525)[0][1:]  # type: ignore[index]
    assert compose["argv"][-6:] == ["up", "--detach", "--wait", "postgres", "rabbitmq", "mailpit"]  # type: ignore[index]
    assert compose["env"] == {  # the loopback ports tools/docker-compose.dev.yml publishes
        "DEV_POSTGRES_PORT": str(ports[0]),
        "DEV_RABBITMQ_PORT": str(ports[1]),
        "DEV_SMTP_PORT": "2525",
    }
    assert selection.mailpit
    assert selection.stop is not None
    assert selection.stop[-4:] == ["stop", "postgres", "rabbitmq", "mailpit"]
    # The credentials docker-compose.yml gives its services, from .env (else .env.example).
    assert selection.url("postgres").startswith("postgresql://postgres:change-me-") or (ROOT / ".env").exists()
    assert selection.url("rabbitmq").endswith(f"@127.0.0.1:{ports[1]}/")
    assert f"project {COMPOSE_PROJECT}" in selection.choices[0].line()


@pytest.mark.usefixtures("listening")
def test_only_the_missing_server_comes_from_a_container(fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]) -> None:
    fake_bin.add("docker")
    answering = servers(ports)[0]
    missing = rabbitmq(f"amqp://guest:guest@127.0.0.1:{free_port_base((0,))}/")
    selection = select([answering, missing], machine(fake_bin, tmp_path))
    assert sources(selection.choices) == [Source.ANSWERING, Source.CONTAINER]
    compose = fake_bin.argvs()[-1]
    assert compose[-3:] == ["--wait", "rabbitmq", "mailpit"]
    assert selection.stop is not None
    assert selection.stop[-3:] == ["stop", "rabbitmq", "mailpit"]  # the answering one is left alone


def test_without_installation_or_engine_it_says_the_apt_command(
    fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]
) -> None:
    fake_bin.add("docker", "exit 1")  # the CLI is there, no engine answers it
    selection = select(servers(ports), machine(fake_bin, tmp_path, os_id="ubuntu"))
    assert sources(selection.choices) == [Source.MISSING, Source.MISSING]
    sudo = "" if os.geteuid() == 0 else "sudo "
    line = selection.choices[0].line()
    assert f"nothing answers on 127.0.0.1:{ports[0]}" in line
    assert f"`{sudo}apt-get install --yes postgresql rabbitmq-server`" in line
    assert "make dev INSTALL=1" in line
    assert [argv[1] for argv in fake_bin.argvs()] == ["info"]  # asked, and nothing started


def test_on_macos_it_says_the_brew_command(fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]) -> None:
    selection = select(servers(ports), machine(fake_bin, tmp_path, system="Darwin"))
    assert "`brew install postgresql@17 rabbitmq`" in selection.choices[1].line()


def test_elsewhere_it_says_to_use_the_package_manager(fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]) -> None:
    selection = select(servers(ports), machine(fake_bin, tmp_path, system="FreeBSD"))
    assert sources(selection.choices) == [Source.MISSING, Source.MISSING]
    assert "install PostgreSQL with this system's package manager" in selection.choices[0].line()


def test_install_runs_the_one_command_then_starts_what_it_installed(
    fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]
) -> None:
    """`make dev INSTALL=1`: the package manager is not run; a stand-in records the command and installs
    a rabbitmq-server whose start makes the port answer, as the real package would."""
    found = machine(fake_bin, tmp_path)
    installs: list[list[str]] = []

    def run(argv: Sequence[str], env: dict[str, str] | None) -> int:
        if Path(argv[0]).name in {"sudo", "apt-get"}:
            installs.append(list(argv))
            fake_bin.add("rabbitmq-server", fake_bin.listen(str(ports[1])))
            return 0
        return subprocess.run(list(argv), check=False).returncode  # noqa: S603 - the test's own fakes

    found.run = run
    lines: list[str] = []
    selection = select(servers(ports)[1:], found, install=True, within=30, say=lines.append)

    sudo = [] if os.geteuid() == 0 else ["sudo"]
    assert installs == [[*sudo, "apt-get", "install", "--yes", "rabbitmq-server"]]
    assert lines == [f"installing RabbitMQ: {shlex.join(installs[0])}"]
    assert sources(selection.choices) == [Source.LOCAL]


def test_make_servers_never_starts_containers(fake_bin: Bin, tmp_path: Path, ports: tuple[int, int]) -> None:
    """The tests' servers: answering or local only; the fixtures start containers of their own."""
    fake_bin.add("docker")
    selection = select(servers(ports), machine(fake_bin, tmp_path), containers=False)
    assert sources(selection.choices) == [Source.MISSING, Source.MISSING]
    assert fake_bin.called() == []
    assert "Docker" not in selection.choices[0].line()


def test_make_dev_says_which_source_it_chose_and_stops_when_one_is_missing(
    tmp_path: Path, ports: tuple[int, int]
) -> None:
    """tools/devstack.py itself, on this machine, pointed at ports where nothing answers, with a PATH
    where nothing is installed: it names each server's source and exits 1 before touching anything."""
    empty = tmp_path / "empty-path"
    empty.mkdir()
    postgres_url, amqp_url = (server.url for server in servers(ports))
    command = [sys.executable, str(ROOT / "tools" / "devstack.py"), "--postgres", postgres_url, "--amqp", amqp_url]
    result = subprocess.run(  # noqa: S603 - the project's own tool
        command, env={**os.environ, "PATH": str(empty)}, capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 1, result.stdout + result.stderr
    lines = [line.partition("| ")[2] for line in result.stdout.splitlines()]
    assert lines[0].startswith(f"PostgreSQL: missing (nothing answers on 127.0.0.1:{ports[0]}, it is not installed")
    assert lines[1].startswith(f"RabbitMQ: missing (nothing answers on 127.0.0.1:{ports[1]}, it is not installed")


def compose_config(ports: tuple[int, int]) -> dict[str, object]:
    """`docker compose config` of the command the container path runs: what it would start, resolved by
    the real compose parser (make lint-infra's), offline."""
    spec = importlib.util.spec_from_file_location("lint_infra", ROOT / "deploy" / "lint_infra.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    command, env = compose_up(servers(ports), Machine(), 2525)
    config = [*module.compose_command(), *command[2 : command.index("up")], "config", "--format", "json"]
    clean = {"PATH": os.environ.get("PATH", ""), "HOME": str(ROOT), **env}
    result = subprocess.run(config, env=clean, capture_output=True, text=True, check=True, cwd=ROOT)  # noqa: S603
    parsed: dict[str, object] = json.loads(result.stdout)
    return parsed


def test_the_containers_are_make_ups_images_on_loopback_ports_with_volumes_of_their_own(
    ports: tuple[int, int],
) -> None:
    config = compose_config(ports)
    services = config["services"]
    assert isinstance(services, dict)
    assert services["postgres"]["image"] == POSTGRES_IMAGE
    assert services["rabbitmq"]["image"] == RABBITMQ_IMAGE
    published = {
        (name, int(port["target"])): (port["host_ip"], int(port["published"]))
        for name in ("postgres", "rabbitmq", "mailpit")
        for port in services[name]["ports"]
    }
    assert published[("postgres", 5432)] == ("127.0.0.1", ports[0])
    assert published[("rabbitmq", 5672)] == ("127.0.0.1", ports[1])
    assert published[("mailpit", 1025)] == ("127.0.0.1", 2525)
    assert {host for host, _port in published.values()} == {"127.0.0.1"}
    volumes = config["volumes"]
    assert isinstance(volumes, dict)
    assert volumes["postgres-data"]["name"] == f"{COMPOSE_PROJECT}_postgres-data"  # not make up's fastmicro_...
    assert config["name"] == COMPOSE_PROJECT


def test_the_containers_start_where_a_docker_engine_answers(tmp_path: Path, ports: tuple[int, int]) -> None:
    """The real thing, where it can run: a PATH with the Docker CLI alone, so no installation is started."""
    docker = Machine().which("docker")
    if docker is None or not Machine().docker_answers():
        pytest.skip("no Docker engine answers here: the container path is tested by the command it would run")
    (tmp_path / "docker").symlink_to(docker)
    selection = select(servers(ports), Machine(path=str(tmp_path)), within=120)
    try:
        assert sources(selection.choices) == [Source.CONTAINER, Source.CONTAINER]
    finally:
        if selection.stop is not None:
            subprocess.run(selection.stop, check=False)  # noqa: S603
