"""`make generate`: every file that lists the services, written from the services' own manifests.

Each services/<name>/pyproject.toml says what makes that service itself (`[tool.fastmicro]`: its
port, what its worker runs, whether it signs tokens or sends mail). From those this writes the
files that only repeat them: docker-compose.yml, the Kubernetes base and overlays, the database
init script, and the lists inside the root pyproject, .env.example, create-secrets.sh, the Makefile
(`make up`'s banner, tools/banner.py) and the docs
(between `generated: services` and `end generated`). The files are committed; `--check` (run by
`make lint` and deploy/tests/test_workspace.py) fails, naming each one, when any is stale.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from pathlib import Path

import jinja2
import yaml
from banner import banner, compose_where

from fastmicro.workspace import ServiceManifest, find_root, services

TEMPLATES = Path(__file__).resolve().parent / "templates"
_ROLE_PHRASES = {
    "relay": "the outbox relay",
    "consumer": "the consumer",
    "sender": "the email sender",
    "retention": "the retention purge",
}
_START = re.compile(r"generated: services\b")
_END = re.compile(r"end generated\b")


def roles_phrase(service: ServiceManifest) -> str:
    phrases = [_ROLE_PHRASES[role] for role in service.roles]
    return phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]


def service_env(service: ServiceManifest) -> str:
    """The environment a service's pods take from Secrets beside DATABASE_URL and AMQP_URL."""
    public_note = "" if service.signs_tokens else "  # public keys only: this service verifies tokens, never mints one"
    lines = [
        f"            - name: JWT_PUBLIC_KEYS{public_note}",
        "              valueFrom:",
        "                secretKeyRef:",
        "                  name: fastmicro-jwt-public",
        "                  key: keys",
    ]
    if service.signs_tokens:
        lines += [
            f"            - name: JWT_SIGNING_KEY  # {service.name} alone holds the private key",
            "              valueFrom:",
            "                secretKeyRef:",
            "                  name: fastmicro-jwt-signing",
            "                  key: key",
        ]
    if service.sends_mail:
        for variable, key in (("SMTP_USERNAME", "username"), ("SMTP_PASSWORD", "password")):
            lines += [
                f"            - name: {variable}",
                "              valueFrom:",
                "                secretKeyRef:",
                f"                  name: {service.name}-smtp",
                f"                  key: {key}",
                "                  optional: true  # only for a mail server that wants a login",
            ]
    return "\n".join(lines) + "\n"


def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(  # noqa: S701 - YAML and shell, not HTML
        loader=jinja2.FileSystemLoader(TEMPLATES),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.globals.update(roles_phrase=roles_phrase, service_env=service_env)
    return environment


def _render(template: str, found: tuple[ServiceManifest, ...], **extra: object) -> str:
    return _environment().get_template(template).render(services=found, **extra)


#: Whole files: path -> how to write it.
def whole_files(found: tuple[ServiceManifest, ...], root: Path) -> dict[str, str]:
    files = {
        "deploy/k8s/base/monitoring.yaml": _render(
            "k8s-monitoring.yaml.jinja", found, alert_rules=_alert_rules(root / "deploy" / "monitoring" / "alerts.yml")
        ),
        "docker-compose.yml": _render("docker-compose.yml.jinja", found),
        "deploy/postgres/init-databases.sh": _render("init-databases.sh.jinja", found),
        "deploy/monitoring/prometheus.yml": _render("prometheus.yml.jinja", found),
        "deploy/k8s/base/kustomization.yaml": _render("k8s-kustomization.yaml.jinja", found),
        "deploy/k8s/base/postgres.yaml": _render("k8s-postgres.yaml.jinja", found),
        "deploy/k8s/overlays/dev/kustomization.yaml": _render("k8s-overlay-dev.yaml.jinja", found),
        "deploy/k8s/overlays/prod/kustomization.yaml": _render("k8s-overlay-prod.yaml.jinja", found),
    }
    for service in found:
        files[f"deploy/k8s/base/{service.name}.yaml"] = _render("k8s-service.yaml.jinja", found, s=service)
    return files


def _alert_rules(path: Path) -> str:
    """deploy/monitoring/alerts.yml's groups as a PrometheusRule's spec (indented under `spec:`)."""
    groups = {"groups": yaml.safe_load(path.read_text())["groups"]}
    text = yaml.safe_dump(groups, sort_keys=False, width=120, allow_unicode=True)
    return "".join(f"  {line}" if line.strip() else line for line in text.splitlines(keepends=True)).rstrip("\n")


#: Blocks inside hand-written files: path -> the lines between the markers, by the block's indent.
def blocks(found: tuple[ServiceManifest, ...]) -> dict[str, Callable[[str, str], list[str]]]:
    """For each file, a function of (the start marker's line, its indent) giving the block's lines."""

    def pyproject(marker: str, indent: str) -> list[str]:
        if not indent:  # [tool.uv.sources]
            return [f"{s.name} = {{ workspace = true }}" for s in found]
        after = _PYPROJECT_CONTEXT.get(marker.strip(), "")
        if after == "mypy":
            return [f'{indent}"services/{s.name}/src",' for s in found]
        return [f'{indent}"{s.name}",' for s in found]

    return {
        "pyproject.toml": pyproject,
        ".env.example": lambda _m, _i: [f"{s.env_prefix}_DB_PASSWORD=change-me-{s.name}-db" for s in found],
        "deploy/k8s/create-secrets.sh": lambda _m, _i: [f"services=({' '.join(s.name for s in found)})"],
        "README.md": lambda _m, _i: [
            "| URL | what |",
            "|-----|------|",
            *(f"| <http://localhost:{s.port}/docs> | {s.name}: Swagger UI |" for s in found),
        ],
        "Makefile": lambda _m, indent: [f"{indent}@echo '{line}'" for line in banner(found, compose_where())],
        "docs/operations.md": lambda _m, _i: [
            "| service | port | its worker runs | what it is |",
            "|---------|------|-----------------|------------|",
            *(f"| {s.name} | {s.port} | {', '.join(s.roles)} | {s.description} |" for s in found),
        ],
    }


#: Which list a pyproject block fills, by its start marker (the dev group's and mypy_path's look alike).
_PYPROJECT_CONTEXT = {"# generated: services (tools/workspace.py, mypy_path)": "mypy"}


def fill_blocks(text: str, block: Callable[[str, str], list[str]], where: str) -> str:
    lines = text.splitlines(keepends=True)
    out: list[str] = []
    index = 0
    found = False
    while index < len(lines):
        line = lines[index]
        out.append(line)
        index += 1
        if not _START.search(line):
            continue
        found = True
        indent = line[: len(line) - len(line.lstrip())]
        end = next((i for i in range(index, len(lines)) if _END.search(lines[i])), None)
        if end is None:
            raise SystemExit(f"{where}: a `generated: services` block has no `end generated` line")
        out.extend(f"{new}\n" for new in block(line, indent))
        index = end
    if not found:
        raise SystemExit(f"{where}: no `generated: services` block")
    return "".join(out)


def expected(root: Path) -> dict[str, str]:
    """Every generated file (or file with a generated block) and the text it should have."""
    found = services(root)
    result = whole_files(found, root)
    for path, block in blocks(found).items():
        result[path] = fill_blocks((root / path).read_text(), block, path)
    return result


def stale(root: Path) -> list[str]:
    """The generated files whose text differs from what the manifests give (or that are missing)."""
    return sorted(
        path
        for path, text in expected(root).items()
        if not (root / path).is_file() or (root / path).read_text() != text
    )


def orphans(root: Path) -> list[str]:
    """Per-service files generated for a service that no longer exists."""
    names = {s.name for s in services(root)}
    fixed = {"kustomization", "postgres", "rabbitmq", "monitoring"}  # monitoring: one for all services
    return sorted(
        f"deploy/k8s/base/{path.name}"
        for path in (root / "deploy" / "k8s" / "base").glob("*.yaml")
        if path.stem not in fixed | names
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; fail naming each stale file")
    parser.add_argument("--root", type=Path, default=None, help="the workspace (default: the one here)")
    args = parser.parse_args(argv)
    root = args.root.resolve() if args.root else find_root()
    if args.check:
        problems = [f"{path} is stale" for path in stale(root)] + [f"{path}: no such service" for path in orphans(root)]
        for problem in problems:
            print(f"workspace: {problem}", file=sys.stderr)  # noqa: T201
        if problems:
            print("workspace: run `make generate` and commit the result", file=sys.stderr)  # noqa: T201
        return 1 if problems else 0
    for path, text in expected(root).items():
        target = root / path
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
            print(f"workspace: wrote {path}")  # noqa: T201
    for path in orphans(root):
        (root / path).unlink()
        print(f"workspace: removed {path}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
