"""deploy/postgres/init-databases.sh against a PostgreSQL of the test's own, as the postgres image runs
it on a new volume: the script through `sh`, psql on the server's socket, the passwords from the env.

The server is private (its own data folder, a socket in it, no TCP), so the machine's PostgreSQL is
never touched. Skipped where no PostgreSQL server binaries are installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import ROOT, SERVICES

SCRIPT = ROOT / "deploy" / "postgres" / "init-databases.sh"
PORT = "5499"


def server_binaries() -> Path | None:
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    found = [Path(p) for p in candidates if Path(p, "initdb").exists()]
    if found:
        return found[-1]
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def postgres_user_exists() -> bool:
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return True


BIN = server_binaries()
pytestmark = [
    pytest.mark.skipif(BIN is None, reason="no PostgreSQL server binaries (initdb) on this machine"),
    pytest.mark.skipif(os.geteuid() == 0 and not postgres_user_exists(), reason="root, and no postgres user to run as"),
]


def as_server_user(command: list[str]) -> subprocess.CompletedProcess[str]:
    """PostgreSQL refuses to run as root: as root, run as the `postgres` user."""
    prefix = ["/usr/sbin/runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *command], capture_output=True, text=True, check=True)  # noqa: S603


@pytest.fixture(scope="module")
def server() -> Iterator[Path]:
    assert BIN is not None
    # Not under pytest's temporary folder: as root, that one is closed to the postgres user.
    home = Path(tempfile.mkdtemp(prefix="fastmicro-init-databases-"))
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(home, user.pw_uid, user.pw_gid)
    data = home / "data"
    as_server_user([str(BIN / "initdb"), "--auth=trust", "--username=postgres", "-D", str(data)])
    options = f"-p {PORT} -k {home} -c listen_addresses=''"
    as_server_user([str(BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(home / "log"), "start"])
    try:
        yield home
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            as_server_user([str(BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(home, ignore_errors=True)


def psql(server: Path, sql: str, *, user: str = "postgres", database: str = "postgres") -> str:
    assert BIN is not None
    command = [str(BIN / "psql"), "-h", str(server), "-p", PORT, "-U", user, "-d", database]
    return as_server_user([*command, "-Atc", sql]).stdout.strip()


@pytest.fixture(scope="module")
def initialised(server: Path) -> Path:
    script = server / "init-databases.sh"
    shutil.copy(SCRIPT, script)
    passwords = {f"{s.upper()}_DB_PASSWORD": f"change-me-{s}-db" for s in SERVICES}
    passwords["ORDERS_DB_PASSWORD"] = 'it\'s a "quoted" pass; word'
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "PGHOST": str(server), "PGPORT": PORT, "POSTGRES_USER": "postgres"}
    as_server_user(["env", *(f"{k}={v}" for k, v in {**env, **passwords}.items()), "sh", str(script)])
    return server


def test_each_service_gets_its_own_login_role_and_database(initialised: Path) -> None:
    databases = psql(initialised, "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database ORDER BY 1")
    roles = psql(initialised, "SELECT rolname FROM pg_roles WHERE rolcanlogin AND NOT rolsuper ORDER BY 1")

    assert {f"{s}:{s}" for s in SERVICES} <= set(databases.splitlines())
    assert set(roles.splitlines()) == set(SERVICES)


def test_no_role_reaches_another_services_database(initialised: Path) -> None:
    assert psql(initialised, "SELECT 1", user="users", database="users") == "1"
    with pytest.raises(subprocess.CalledProcessError) as refused:
        psql(initialised, "SELECT 1", user="orders", database="users")

    assert "CONNECT" in refused.value.stderr


def test_passwords_are_set_whatever_characters_they_hold(initialised: Path) -> None:
    stored = psql(initialised, "SELECT rolname || ':' || left(rolpassword, 14) FROM pg_authid ORDER BY 1")

    # orders' password holds quotes and a semicolon: psql's :'password' quoting keeps it one literal
    assert {f"{s}:SCRAM-SHA-256$" for s in SERVICES} <= set(stored.splitlines())
