"""`make service NAME=<name>`: a new service, ready for make dev, make test, make up and Kubernetes.

Renders templates/service (copier) into services/<name> with the next free port, rewrites every
file that lists the services (tools/workspace.py), and adds the service to uv.lock without the
network where uv's cache holds every package (`uv lock --offline`), with it otherwise.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

import copier

from fastmicro.workspace import services

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "templates" / "service"


def uv() -> str:
    found = shutil.which("uv")
    if found is None:
        raise SystemExit("new_service: uv is not on PATH (make install puts it there)")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", help="a Python package name: lower case, digits, underscores")
    parser.add_argument("--port", type=int, help="its HTTP port (default: one past the highest in use)")
    args = parser.parse_args(argv)
    existing = services(ROOT)
    if not re.fullmatch(r"[a-z][a-z0-9_]*", args.name):
        raise SystemExit(f"new_service: {args.name!r} is not a lower-case Python package name")
    target = ROOT / "services" / args.name
    if target.exists() or args.name in {"fastmicro", "fastmicro_contracts", "tests", "bench"}:
        raise SystemExit(f"new_service: {args.name} exists already")
    port = args.port or max(service.port for service in existing) + 1
    copier.run_copy(
        str(TEMPLATE), str(target), data={"name": args.name, "port": port}, defaults=True, quiet=True, unsafe=False
    )
    # The imports sort by the service's own name: ruff puts them in order, as it does any file.
    ruff = [sys.executable, "-m", "ruff"]
    subprocess.run([*ruff, "check", "--fix", "--quiet", str(target)], cwd=ROOT, check=True)  # noqa: S603
    subprocess.run([*ruff, "format", "--quiet", str(target)], cwd=ROOT, check=True)  # noqa: S603
    subprocess.run([sys.executable, str(ROOT / "tools" / "workspace.py")], check=True)  # noqa: S603
    lock = subprocess.run([uv(), "lock", "--offline"], cwd=ROOT, check=False)  # noqa: S603
    if lock.returncode != 0:
        subprocess.run([uv(), "lock"], cwd=ROOT, check=True)  # noqa: S603
    print(f"new_service: services/{args.name} on port {port}; `make dev`, `make test` and `make up` include it")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
