"""`python -m notifications serve|worker|migrate|topology`."""

from __future__ import annotations

from fastmicro.cli import run_cli
from notifications.main import background_roles, create_app
from notifications.settings import NotificationsSettings


def main() -> None:
    run_cli(
        settings_factory=NotificationsSettings,
        app_factory=create_app,
        migrations="notifications:migrations",
        roles=background_roles,
    )


if __name__ == "__main__":
    main()
