"""A three-node RabbitMQ cluster of the machine's own RabbitMQ installation, for one test.

Each node has its own name (`fm<tag>n<i>@localhost`), AMQP and distribution ports, data and
log directories under a temporary directory, and the cluster its own Erlang cookie (HOME is
that directory, for the nodes and for the CLI tools alike). Nothing is shared with the node the
machine runs on 5672: not its config (RABBITMQ_CONF_ENV_FILE and RABBITMQ_CONFIG_FILE point at
the cluster's own files), not its data, not its cookie. The scripts are the installation's own
(`/usr/lib/rabbitmq/bin` on Debian, where `/usr/sbin/rabbitmq-*` switch to the `rabbitmq` user
and its HOME); RABBITMQ_SBIN names another directory.

Every wait is for a state the CLI reports (`rabbitmqctl wait` for a booted node, `list_queues`
for a queue's leader and online members), bounded by `BOOT_TIMEOUT` or `STATE_TIMEOUT`.
`KEEP_CLUSTER=1` keeps the nodes' data and logs (`<tmp>/rmq*/<node>/log`) after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Seconds a node may take to boot (about 8 s on two loaded cores) or to join the cluster.
BOOT_TIMEOUT = 90.0
#: Seconds a queue may take to elect a leader or to see a member back online.
STATE_TIMEOUT = 60.0
COOKIE = "FASTMICROFAULTSUITECLUSTER"
_POLL = 0.2

# The CLI tools take distribution ports from 35672 up (25672 + 10000): never give a node one of those.
_CLI_PORTS = range(35672, 35700)


def rabbitmq_scripts() -> Path | None:
    """The directory of the installation's own `rabbitmq-server` and `rabbitmqctl`, or None if absent."""
    candidates = [os.environ.get("RABBITMQ_SBIN", ""), "/usr/lib/rabbitmq/bin"]
    if found := shutil.which("rabbitmq-server"):
        candidates.append(str(Path(found).resolve().parent))
    for candidate in candidates:
        if candidate and (Path(candidate) / "rabbitmq-server").exists() and (Path(candidate) / "rabbitmqctl").exists():
            return Path(candidate)
    return None


def _free_port() -> int:
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        if port not in _CLI_PORTS:
            return port


@dataclass
class Node:
    name: str
    amqp_port: int
    dist_port: int
    home: Path
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0

    @property
    def base(self) -> Path:
        return self.home / self.name.partition("@")[0]

    @property
    def pid_file(self) -> Path:
        return self.base / "pid"


@dataclass
class RabbitCluster:
    scripts: Path
    home: Path
    nodes: list[Node] = field(default_factory=list)

    @classmethod
    def create(cls, scripts: Path, home: Path, tag: str, size: int = 3) -> RabbitCluster:
        home.mkdir(parents=True, exist_ok=True)
        cookie = home / ".erlang.cookie"
        cookie.write_text(COOKIE)
        cookie.chmod(0o400)
        nodes = [Node(f"fm{tag}n{i}@localhost", _free_port(), _free_port(), home) for i in range(1, size + 1)]
        return cls(scripts, home, nodes)

    def env(self, node: Node | None = None) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "RABBITMQ_CONF_ENV_FILE": "/dev/null",
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }
        if node is not None:
            node.base.mkdir(parents=True, exist_ok=True)
            config = node.base / "rabbitmq.conf"
            config.write_text(f"listeners.tcp.1 = 127.0.0.1:{node.amqp_port}\nloopback_users = none\n")
            plugins = node.base / "enabled_plugins"
            plugins.write_text("[].\n")
            env |= {
                "RABBITMQ_NODENAME": node.name,
                "RABBITMQ_DIST_PORT": str(node.dist_port),
                "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
                "RABBITMQ_LOG_BASE": str(node.base / "log"),
                "RABBITMQ_CONFIG_FILE": str(config),
                "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
                "RABBITMQ_PID_FILE": str(node.pid_file),
            }
        return env

    async def ctl(self, node: Node, *args: str, within: float = STATE_TIMEOUT) -> str:
        """`rabbitmqctl -n <node> <args>`; its stdout. Raises with its output when it fails."""
        process = await asyncio.create_subprocess_exec(
            str(self.scripts / "rabbitmqctl"),
            "-n",
            node.name,
            *args,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        try:
            async with asyncio.timeout(within + 10):
                out, _ = await process.communicate()
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        text = out.decode(errors="replace")
        if process.returncode != 0:
            raise RuntimeError(f"rabbitmqctl -n {node.name} {' '.join(args)} failed ({process.returncode}): {text}")
        return text

    async def start(self, node: Node) -> None:
        """Start `node` (again, after a kill: same data) and return once it has booted."""
        with contextlib.suppress(FileNotFoundError):
            node.pid_file.unlink()  # a killed node leaves its pid file: `wait` would read the dead pid
        env = self.env(node)  # writes the node's own files first
        log = (node.base / "server.out").open("ab")
        node.process = await asyncio.create_subprocess_exec(
            str(self.scripts / "rabbitmq-server"),
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches the VM and its helpers
        )
        log.close()
        await self.ctl(node, "wait", str(node.pid_file), "--timeout", str(int(BOOT_TIMEOUT)), within=BOOT_TIMEOUT)

    async def form(self) -> None:
        """Boot every node, then join the others to the first."""
        await asyncio.gather(*(self.start(node) for node in self.nodes))
        first = self.nodes[0]
        for node in self.nodes[1:]:
            await self.ctl(node, "stop_app")
            await self.ctl(node, "join_cluster", first.name)
            await self.ctl(node, "start_app")
        await self.ctl(first, "await_online_nodes", str(len(self.nodes)), "--timeout", str(int(BOOT_TIMEOUT)))

    async def kill(self, node: Node) -> float:
        """SIGKILL the node's VM (no shutdown of any kind); returns the monotonic time of the kill."""
        assert node.process is not None
        os.killpg(node.process.pid, signal.SIGKILL)
        killed = time.monotonic()
        await node.process.wait()
        node.process = None
        return killed

    async def restart(self, node: Node) -> None:
        node.restarts += 1
        await self.start(node)

    def live(self) -> list[Node]:
        return [node for node in self.nodes if node.process is not None]

    async def queue(self, name: str) -> dict[str, Any]:
        """The queue as a live node reports it: `leader`, `members`, `online` (node names)."""
        node = self.live()[0]
        out = await self.ctl(node, "list_queues", "-q", "--formatter", "json", "name", "leader", "members", "online")
        for queue in json.loads(out):
            if queue["name"] == name:
                return dict(queue)
        raise LookupError(f"{node.name} lists no queue {name!r}")

    async def leader(self, name: str) -> Node:
        leader = (await self.queue(name))["leader"]
        return next(node for node in self.nodes if node.name == leader)

    async def wait_queue(self, name: str, *, leader_not: Node | None = None, online: int | None = None) -> float:
        """Wait until the queue has a leader (not `leader_not`) and `online` members; returns the seconds it took."""
        started = time.monotonic()
        async with asyncio.timeout(STATE_TIMEOUT):
            while True:
                with contextlib.suppress(RuntimeError, LookupError, json.JSONDecodeError):
                    queue = await self.queue(name)
                    live = {node.name for node in self.live()}
                    if (
                        queue["leader"] in live
                        and (leader_not is None or queue["leader"] != leader_not.name)
                        and (online is None or len(set(queue["online"]) & live) >= online)
                    ):
                        return time.monotonic() - started
                await asyncio.sleep(_POLL)  # beside the second or so each CLI call takes

    async def stop(self) -> None:
        """Kill every node still running and remove the data."""
        for node in self.live():
            with contextlib.suppress(ProcessLookupError):
                await self.kill(node)
        if not os.environ.get("KEEP_CLUSTER"):
            shutil.rmtree(self.home, ignore_errors=True)
