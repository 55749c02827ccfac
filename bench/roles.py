"""`python -m bench.roles <service> <RoleClass>`: one of a service's background roles alone, as its worker runs it.

The service's own `roles()` (its Runtime's, in main.py's `service`) is called and only the roles of that class are
kept, then run by the kernel's `run_worker` (the code behind `python -m <service> worker`, on
uvloop): the consumer is measured without the email sender beside it, and the other way round.
It logs `worker_started` once the role runs.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
from collections.abc import Sequence

import uvloop

from fastmicro.cli import run_worker
from fastmicro.logging import configure_logging
from fastmicro.runtime import BackgroundRole, RolesFactory, Runtime
from fastmicro.settings import ServiceSettings
from fastmicro.tracing import configure_tracing


def settings_class(service: str) -> type[ServiceSettings]:
    module = importlib.import_module(f"{service}.settings")
    for _, value in inspect.getmembers(module, inspect.isclass):
        if issubclass(value, ServiceSettings) and value is not ServiceSettings:
            return value
    raise LookupError(f"{service}.settings defines no ServiceSettings")


def only(roles: RolesFactory, name: str) -> RolesFactory:
    def selected(runtime: Runtime) -> Sequence[BackgroundRole]:
        everything = roles(runtime)
        chosen = [role for role in everything if type(role).__name__ == name]
        if not chosen:
            raise SystemExit(f"no {name} among the roles: {', '.join(type(role).__name__ for role in everything)}")
        return chosen

    return selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("service")
    parser.add_argument("role", help="the class name of the role, e.g. EventConsumer, EmailSender, OutboxRelay")
    args = parser.parse_args()
    service = importlib.import_module(f"{args.service}.main").service
    settings = service.settings()
    configure_tracing(settings.service_name)  # as `worker` does: on only when the OTEL_* variables say so
    configure_logging(settings)
    uvloop.run(run_worker(settings, only(service.runtime.roles, args.role), service.runtime))


if __name__ == "__main__":
    main()
