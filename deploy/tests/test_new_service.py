"""`make service NAME=x` then its tests and `make lint` pass with no other edit: proved on a copy of the repository.

The copy is the work tree as git sees it (tracked and new files, nothing ignored); the service is
rendered there from templates/service, every list of services regenerated, and uv.lock updated from
uv's cache (`uv lock --offline`), so the test needs no registry.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from .stack import ROOT

NAME = "throwaway"


def run(command: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(  # noqa: S603 - the project's own verbs
        command, cwd=cwd, env=os.environ.copy(), capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"`{' '.join(command)}` failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
    return result


def copy_of_the_repository(target: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    for relative in filter(None, listed.stdout.decode().split("\0")):
        source = ROOT / relative
        if source.is_file():
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / relative)
    if (ROOT / ".mypy_cache").is_dir():  # a warm start for mypy; it checks what changed
        shutil.copytree(ROOT / ".mypy_cache", target / ".mypy_cache")
    return target


def test_a_new_service_passes_its_tests_and_make_lint_with_no_other_edit(tmp_path: Path) -> None:
    repo = copy_of_the_repository(tmp_path / "repo")
    make = shutil.which("make")
    assert make is not None

    run([make, "service", f"NAME={NAME}"], repo, timeout=300)

    service = repo / "services" / NAME
    assert (service / "src" / NAME / "main.py").is_file()
    assert (service / ".copier-answers.yml").is_file()
    for listing in ("docker-compose.yml", "deploy/k8s/base/kustomization.yaml", "pyproject.toml", "uv.lock"):
        assert NAME in (repo / listing).read_text(), f"{listing} does not name {NAME}"
    assert (repo / "deploy" / "k8s" / "base" / f"{NAME}.yaml").is_file()
    run([str(repo / ".venv" / "bin" / "pytest"), f"services/{NAME}", "-q", "-p", "no:randomly"], repo, timeout=300)
    run([make, "lint"], repo, timeout=600)
