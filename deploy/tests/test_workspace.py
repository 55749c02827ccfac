"""Every list of services agrees with `services/*`: what is generated is fresh, and what is read is read from there.

A service declares what makes it itself in `[tool.fastmicro]` of its pyproject (fastmicro.workspace);
tools/workspace.py writes compose, the Kubernetes manifests, the init script and the lists inside the
root pyproject, .env.example, create-secrets.sh, the Makefile's `make up` banner and the docs from those manifests.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fastmicro.workspace import ManifestError, manifest, services

from .stack import MANIFESTS, ROOT

GENERATOR = ROOT / "tools" / "workspace.py"


def check(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - the project's own generator
        [sys.executable, str(GENERATOR), "--check", "--root", str(root)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_every_generated_file_is_fresh() -> None:
    result = check(ROOT)
    assert result.returncode == 0, f"stale generated files (run `make generate`):\n{result.stderr}"


def test_every_folder_under_services_is_a_service_with_a_manifest() -> None:
    folders = {path.name for path in (ROOT / "services").iterdir() if (path / "pyproject.toml").is_file()}
    assert folders == set(MANIFESTS)


def test_the_worker_runs_what_the_manifest_says() -> None:
    """[tool.fastmicro] roles (what the deployment files say the worker runs) is what the code builds."""
    for name, declared in MANIFESTS.items():
        service = importlib.import_module(f"{name}.main").service
        assert service.role_kinds() == declared.roles, f"{name}: its code runs {service.role_kinds()}"


@pytest.fixture
def workspace_copy(tmp_path: Path) -> Path:
    """The files the generator reads and writes, in a folder of their own."""
    for path in (
        "pyproject.toml",
        ".env.example",
        "README.md",
        "Makefile",
        "docs/operations.md",
        "deploy/k8s",
        "deploy/monitoring",
        "services",
    ):
        source, target = ROOT / path, tmp_path / path
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("src", "tests", "*.pyc"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(source, target)
    (tmp_path / "deploy" / "postgres").mkdir(parents=True)
    shutil.copy(ROOT / "deploy/postgres/init-databases.sh", tmp_path / "deploy/postgres/init-databases.sh")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    return tmp_path


def test_a_new_service_folder_names_every_file_that_must_list_it(workspace_copy: Path) -> None:
    billing = workspace_copy / "services" / "billing"
    billing.mkdir()
    (billing / "pyproject.toml").write_text(
        '[project]\nname = "billing"\ndescription = "bills"\n\n[tool.fastmicro]\nport = 8004\nroles = ["relay"]\n'
    )
    result = check(workspace_copy)
    assert result.returncode == 1
    for path in (
        "docker-compose.yml",
        "deploy/k8s/base/billing.yaml",
        "deploy/k8s/base/kustomization.yaml",
        "deploy/k8s/base/postgres.yaml",
        "deploy/k8s/overlays/dev/kustomization.yaml",
        "deploy/k8s/overlays/prod/kustomization.yaml",
        "deploy/postgres/init-databases.sh",
        "deploy/monitoring/prometheus.yml",
        "deploy/k8s/create-secrets.sh",
        ".env.example",
        "pyproject.toml",
        "README.md",
        "Makefile",  # the banner of `make up`
        "docs/operations.md",
    ):
        assert f"{path} is stale" in result.stderr, result.stderr
    subprocess.run([sys.executable, str(GENERATOR), "--root", str(workspace_copy)], check=True, capture_output=True)  # noqa: S603
    assert check(workspace_copy).returncode == 0
    assert "billing-worker:" in (workspace_copy / "docker-compose.yml").read_text()
    assert "http://localhost:8004  (docs: http://localhost:8004/docs)" in (workspace_copy / "Makefile").read_text()
    assert "billing-worker:9004" in (workspace_copy / "deploy/monitoring/prometheus.yml").read_text()
    shutil.rmtree(billing)
    assert "deploy/k8s/base/billing.yaml: no such service" in check(workspace_copy).stderr


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ("", "no [tool.fastmicro] table"),
        ("[tool.fastmicro]\nport = 80\nroles = ['relay']\n", "port must be"),
        ("[tool.fastmicro]\nport = 8010\nroles = ['mailer']\n", "roles must be"),
        ("[tool.fastmicro]\nport = 8010\nroles = ['relay']\nowner = 'x'\n", "unknown keys"),
    ],
)
def test_a_manifest_that_cannot_be_used_is_refused_with_its_reason(tmp_path: Path, table: str, error: str) -> None:
    folder = tmp_path / "services" / "billing"
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text(f'[project]\nname = "billing"\n\n{table}')
    with pytest.raises(ManifestError, match=error.replace("[", r"\[")):
        manifest(folder / "pyproject.toml")


def test_two_services_on_one_port_are_refused(tmp_path: Path) -> None:
    for name in ("billing", "invoices"):
        (tmp_path / "services" / name).mkdir(parents=True)
        (tmp_path / "services" / name / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\n\n[tool.fastmicro]\nport = 8010\nroles = ["relay"]\n'
        )
    with pytest.raises(ManifestError, match="both declare port 8010"):
        services(tmp_path)
