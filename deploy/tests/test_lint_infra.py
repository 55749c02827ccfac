"""Each check of `make lint-infra` passes on the repository's files and fails on a deliberately broken copy.

Every case runs `python deploy/lint_infra.py --root <copy> --only <check>`, the command `make lint-infra`
runs; the cases run side by side, so the whole module takes a few seconds.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .stack import ROOT

LINT = ROOT / "deploy" / "lint_infra.py"
CHECKS = (
    "compose-schema",
    "compose-config",
    "hadolint",
    "promtool-rules",
    "promtool-config",
    "k8s-dev",
    "k8s-prod",
    "workflow-schema",
)


def edit(path: str, old: str, new: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / path
        text = target.read_text()
        assert old in text, f"{old!r} is no longer in {path}: update this broken copy"
        target.write_text(text.replace(old, new, 1))

    return apply


def append(path: str, text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        with (root / path).open("a") as file:
            file.write(text)

    return apply


def delete(path: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / path).unlink()

    return apply


@dataclass(frozen=True)
class Broken:
    """A copy of the files with one mistake, the check that must catch it, and what it must say."""

    check: str
    break_: Callable[[Path], None]
    says: str


BROKEN = {
    "compose: an unknown key": Broken(
        "compose-schema",
        edit("docker-compose.yml", "    restart: unless-stopped\n", "    restartt: unless-stopped\n"),
        "restartt",
    ),
    "compose: a secret missing from .env.example": Broken(
        "compose-config", edit(".env.example", "\nJWT_PUBLIC_KEYS=", "\n# JWT_PUBLIC_KEYS="), "JWT_PUBLIC_KEYS"
    ),
    "compose: a dependency on no service (valid to the schema)": Broken(
        "compose-config",
        edit("docker-compose.yml", "    orders-migrate:\n      condition", "    order-migrate:\n      condition"),
        "order-migrate",
    ),
    "Dockerfile: running as root": Broken("hadolint", append("deploy/Dockerfile", "USER root\n"), "DL3002"),
    "Dockerfile: an unpinned, cached pip install": Broken(
        "hadolint",
        edit("deploy/Dockerfile", 'pip install --no-cache-dir "uv==${UV_VERSION}"', "pip install uv"),
        "DL3013",
    ),
    "alerts: an expression that is not PromQL": Broken(
        "promtool-rules",
        edit(
            "deploy/monitoring/alerts.yml",
            "max by (service) (outbox_lag_seconds) > 60",
            "max by (service) (outbox_lag_seconds > 60",
        ),
        "parse error",
    ),
    "alerts: a template that does not parse": Broken(
        "promtool-rules", edit("deploy/monitoring/alerts.yml", "{{ $labels.queue }}", "{{ $labels.queue }"), "template"
    ),
    "prometheus: a misspelt setting": Broken(
        "promtool-config",
        edit("deploy/monitoring/prometheus.yml", "  scrape_interval: 5s\n", "  scrape_intervall: 5s\n"),
        "scrape_intervall",
    ),
    "k8s: a misspelt alert rule field": Broken(
        "k8s-prod", edit("deploy/k8s/base/monitoring.yaml", "      for: 2m\n", "      fore: 2m\n"), "fore"
    ),
    "k8s: a misspelt probe": Broken(
        "k8s-dev",
        edit("deploy/k8s/base/orders.yaml", "          readinessProbe:\n", "          readinessProbes:\n"),
        "readinessProbes",
    ),
    "k8s: a misspelt field of the PostgreSQL cluster": Broken(
        "k8s-prod", edit("deploy/k8s/base/postgres.yaml", "  instances: 1\n", "  instance: 1\n"), "instance"
    ),
    "k8s: a kind nothing validates": Broken(
        "k8s-prod",
        append(
            "deploy/k8s/base/rabbitmq.yaml", "---\napiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n"
        ),
        "Widget",
    ),
    "k8s: a resource file missing": Broken("k8s-dev", delete("deploy/k8s/base/rabbitmq.yaml"), "rabbitmq.yaml"),
    "workflow: a misspelt key": Broken(
        "workflow-schema",
        edit(".github/workflows/ci.yml", "    runs-on: ubuntu-24.04\n", "    runs_on: ubuntu-24.04\n"),
        "runs_on",
    ),
}


def copy_of_the_files(destination: Path) -> Path:
    for name in ("docker-compose.yml", ".env.example"):
        shutil.copy2(ROOT / name, destination / name)
    for name in ("deploy", ".github"):
        shutil.copytree(ROOT / name, destination / name, ignore=shutil.ignore_patterns("tests", "__pycache__"))
    return destination


def lint(root: Path, check: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own script
        [sys.executable, str(LINT), "--root", str(root), "--only", check],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, subprocess.CompletedProcess[str]]:
    """Every check on the repository itself, and every broken copy, run side by side."""
    jobs: dict[str, tuple[Path, str]] = {f"real {check}": (ROOT, check) for check in CHECKS}
    for case, broken in BROKEN.items():
        root = copy_of_the_files(tmp_path_factory.mktemp("broken"))
        broken.break_(root)
        jobs[case] = (root, broken.check)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(lint, root, check) for name, (root, check) in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


def test_every_check_is_listed_here() -> None:
    listed = subprocess.run(  # noqa: S603 - the project's own script
        [sys.executable, str(LINT), "--list"], capture_output=True, text=True, check=True
    ).stdout

    assert [line.split()[0] for line in listed.splitlines()] == list(CHECKS)
    assert {broken.check for broken in BROKEN.values()} == set(CHECKS)


@pytest.mark.parametrize("check", CHECKS)
def test_the_repository_passes(outcomes: dict[str, subprocess.CompletedProcess[str]], check: str) -> None:
    result = outcomes[f"real {check}"]

    assert result.returncode == 0, result.stdout + result.stderr
    assert "lint-infra: 1 checks passed" in result.stdout


@pytest.mark.parametrize("case", BROKEN)
def test_a_broken_copy_fails(outcomes: dict[str, subprocess.CompletedProcess[str]], case: str) -> None:
    result = outcomes[case]

    assert result.returncode == 1, result.stdout + result.stderr
    assert f"FAIL {BROKEN[case].check}" in result.stdout
    assert BROKEN[case].says in result.stdout, result.stdout


def test_the_compose_schema_alone_misses_what_the_compose_parser_catches(tmp_path: Path) -> None:
    root = copy_of_the_files(tmp_path)
    BROKEN["compose: a dependency on no service (valid to the schema)"].break_(root)

    assert lint(root, "compose-schema").returncode == 0
