"""`python -m orders serve|worker|migrate|topology`."""

from __future__ import annotations

from fastmicro.cli import run_cli
from orders.main import background_roles, create_app
from orders.settings import OrdersSettings


def main() -> None:
    run_cli(
        settings_factory=OrdersSettings,
        app_factory=create_app,
        migrations="orders:migrations",
        roles=background_roles,
    )


if __name__ == "__main__":
    main()
