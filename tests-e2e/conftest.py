"""Fixtures of the end-to-end suite: one stack for the session, started as `make dev` starts it."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from aiosmtpd.controller import Controller

from e2e_stack import (
    ROOT,
    SERVICES,
    WORKER_METRICS_OFFSET,
    Mailbox,
    Stack,
    delete_queues,
    drop_databases,
    free_port,
    free_port_offset,
    wait_ready,
)
from fastmicro.testing import TestServers


@pytest.fixture(scope="session")
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port
    yield box
    controller.stop()


@pytest.fixture(scope="session")
async def stack(
    test_servers: TestServers, mailbox: Mailbox, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    tag = uuid.uuid4().hex[:8]
    prefix, namespace, offset = f"fm_e2e_{tag}_", f"e2e-{tag}.", free_port_offset()
    log = tmp_path_factory.mktemp("stack") / "devstack.log"
    command = [
        sys.executable, str(ROOT / "tools" / "devstack.py"),
        "--postgres", test_servers.database_url,
        "--db-prefix", prefix,
        "--port-offset", str(offset),
        "--amqp-namespace", namespace,
        "--no-smtp-sink", "--smtp-port", str(mailbox.port),
    ]  # fmt: skip
    env = {**os.environ, "AMQP_URL": test_servers.amqp_url, "LOG_FORMAT": "console"}
    with log.open("wb") as output:
        process = await asyncio.create_subprocess_exec(*command, cwd=ROOT, env=env, stdout=output, stderr=output)
    urls = {name: f"http://127.0.0.1:{port + offset}" for name, port in SERVICES.items()}
    try:
        await wait_ready(urls, process, log)
        workers = {
            name: f"http://127.0.0.1:{port + offset + WORKER_METRICS_OFFSET}/metrics" for name, port in SERVICES.items()
        }
        yield Stack(urls, mailbox, log, workers, test_servers.amqp_url, namespace)
    finally:
        process.send_signal(signal.SIGINT)  # as one Ctrl-C would
        try:
            await asyncio.wait_for(process.wait(), 40)
        except TimeoutError:
            process.kill()
            await process.wait()
        await drop_databases(test_servers.database_url, prefix)
        await delete_queues(test_servers.amqp_url, namespace)
    assert process.returncode == 0, f"devstack exited with {process.returncode}; see {log}"
