"""Shared fixtures of the kernel's own tests."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from fastmicro.cli import run_cli
from fastmicro.runtime import RolesFactory
from fastmicro.settings import ServiceSettings

#: Nothing listens here: apps built on it never touch a database unless a test asks them to.
UNUSED_DATABASE_URL = "postgresql+asyncpg://kernel@127.0.0.1:9/unused"


@pytest.fixture
def kernel_settings(amqp_namespace: str) -> ServiceSettings:
    """Settings for an in-process app whose routes need neither the database nor the broker."""
    return ServiceSettings(
        service_name="kernel-test",
        environment="test",
        database_url=UNUSED_DATABASE_URL,
        amqp_namespace=amqp_namespace,
        _env_file=None,
    )


async def cli(settings: ServiceSettings, roles: RolesFactory, *argv: str) -> int:
    """`python -m <svc> <argv>` in-process (in a thread: it runs its own event loop); the exit code."""

    def run() -> int:
        try:
            run_cli(
                settings_factory=lambda: settings,
                app_factory=_no_app,
                migrations=f"{settings.service_name}:migrations",
                roles=roles,
                argv=list(argv),
            )
        except SystemExit as exit_:
            return int(exit_.code or 0)
        return 0

    return await asyncio.to_thread(run)


def _no_app(settings: ServiceSettings) -> Any:
    raise AssertionError("these commands never build the app")
