"""`Service`: a service's whole composition root, declared once in its `main.py`.

    class Orders(Runtime[OrdersSettings]):
        def uow(self) -> OrdersUnitOfWork: ...
        def roles(self) -> list[BackgroundRole]: ...   # what its worker runs, in its own code

    service = Service(Orders, OrdersSettings, title="fastmicro orders", routers=[router], revocations=True)

`service.create_app()` builds the FastAPI app (fastmicro.web), `service.main()` is `python -m orders`
(fastmicro.cli), `service.declare_topology(settings)` declares its queues (tests, `topology`), and
`service.role_kinds()` names what its worker runs (checked against its `[tool.fastmicro]` manifest).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar

from fastmicro.cli import declare_topology, run_cli
from fastmicro.runtime import BackgroundRole, Runtime, role_kind
from fastmicro.settings import ServiceSettings
from fastmicro.web import create_app

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

SettingsT = TypeVar("SettingsT", bound=ServiceSettings)
RuntimeT = TypeVar("RuntimeT", bound=Runtime[Any])


@dataclass(frozen=True)
class Service(Generic[RuntimeT, SettingsT]):
    """What is the same in every service, parametrised by what is its own."""

    runtime: type[RuntimeT]  #: its Runtime subclass: its parts, its unit of work and its roles()
    settings: type[SettingsT]  #: its ServiceSettings subclass
    title: str
    description: str = ""
    routers: Sequence[APIRouter] = field(default=())
    #: It has the kernel's outbox table (it publishes): readiness and /metrics report the outbox lag.
    outbox: bool = True
    #: It learns of deleted users from UserDeleted (fastmicro.revocation): their tokens get 401.
    revocations: bool = False

    @property
    def package(self) -> str:
        """Its Python package (`orders`): where its migrations and `main.service` live."""
        return self.runtime.__module__.partition(".")[0]

    def create_app(self, settings: SettingsT | None = None) -> FastAPI:
        return create_app(
            settings if settings is not None else self.settings(),
            title=self.title,
            description=self.description,
            routers=self.routers,
            runtime=self.runtime,
            roles=self.runtime.roles,
            outbox=self.outbox,
            revocations=self.revocations,
        )

    def main(self, argv: Sequence[str] | None = None) -> None:
        """`python -m <service> serve|worker|migrate|topology|queues|dlq`."""
        run_cli(
            settings_factory=self.settings,
            app_factory=self.create_app,
            app_import=f"{self.package}.main:service.create_app",
            migrations=f"{self.package}:migrations",
            runtime=self.runtime,
            roles=self.runtime.roles,
            argv=argv,
        )

    async def declare_topology(self, settings: SettingsT, *, wait: float = 10.0) -> list[str]:
        """Declare the exchange and this service's queues, as `python -m <service> topology` does."""
        return await declare_topology(settings, self.runtime.roles, wait=wait, runtime=self.runtime)

    def roles(self, settings: SettingsT | None = None) -> Sequence[BackgroundRole]:
        """The roles its worker runs, built (nothing connects until they run) from `settings` or the defaults."""
        return self.runtime.from_settings(settings if settings is not None else self.settings(_env_file=None)).roles()

    def role_kinds(self) -> tuple[str, ...]:
        """What its worker runs, by kind (`relay`, `consumer`, ...): what its manifest must say."""
        return tuple(role_kind(role) for role in self.roles())
