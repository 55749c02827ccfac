"""`python -m users serve|migrate|topology`."""

from __future__ import annotations

from fastmicro.cli import run_cli
from users.main import create_app
from users.settings import UsersSettings


def main() -> None:
    run_cli(settings_factory=UsersSettings, app_factory=create_app, migrations="users:migrations")


if __name__ == "__main__":
    main()
