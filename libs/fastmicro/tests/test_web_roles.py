"""Where create_app runs the background roles: beside the API unless SERVE_ROLES says a worker does."""

from __future__ import annotations

import asyncio

import pytest

from fastmicro.runtime import BackgroundRole, Runtime
from fastmicro.settings import ServiceSettings
from fastmicro.testing import app_client
from fastmicro.web import create_app


class RecordingRole:
    """A role that notes it ran and that it was asked to stop."""

    def __init__(self) -> None:
        self.running = asyncio.Event()
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        self.running.set()
        await self.stopped.wait()

    def stop(self) -> None:
        self.stopped.set()


async def test_serve_runs_the_roles_for_the_life_of_the_app(kernel_settings: ServiceSettings) -> None:
    role = RecordingRole()

    async with app_client(create_app(kernel_settings, title="roles", roles=lambda _runtime: [role])) as client:
        await asyncio.wait_for(role.running.wait(), 5)  # the app's startup has run: this is a bound, not a sleep
        assert (await client.get("/health/live")).status_code == 200
        assert not role.stopped.is_set()

    assert role.stopped.is_set()


async def test_with_serve_roles_false_the_api_runs_none(kernel_settings: ServiceSettings) -> None:
    settings = kernel_settings.model_copy(update={"serve_roles": False})
    built: list[Runtime] = []

    def roles(runtime: Runtime) -> list[BackgroundRole]:
        built.append(runtime)
        return [RecordingRole()]

    async with app_client(create_app(settings, title="no-roles", roles=roles)) as client:
        assert (await client.get("/health/live")).status_code == 200

    assert built == []


@pytest.mark.parametrize(("value", "expected"), [("false", False), ("true", True)])
def test_serve_roles_is_read_from_the_environment(
    kernel_settings: ServiceSettings, monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("SERVE_ROLES", value)

    settings = ServiceSettings(service_name="roles", database_url=kernel_settings.database_url, _env_file=None)

    assert settings.serve_roles is expected
