"""deploy/Dockerfile: what it promises, and its install steps replayed without a Docker engine.

The replay copies what the build stage's COPY lines copy (minus what .dockerignore keeps out of the
context) into an empty folder and runs the build stage's own `uv sync` lines there, then runs the
result the way the image's entrypoint does: `python -m <service>`. The base image is the one part
it cannot replay (this machine's Python 3.11 stands in for it).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from .stack import ROOT, SERVICES, app_paths, cli_commands

# The fixture installs the image's environment three times (`uv sync`): on a cold cache or a busy machine that
# alone can pass pytest-timeout's default 120 s, which counts it against the first test.
pytestmark = pytest.mark.timeout(600)

DOCKERFILE = ROOT / "deploy" / "Dockerfile"
DEV_TOOLS = ("pytest", "mypy", "ruff", "testcontainers", "check_jsonschema", "kubernetes_validate", "aiosmtpd")


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str
    stage: str


def instructions() -> list[Instruction]:
    """The Dockerfile's instructions, continuation lines joined, each with the stage it belongs to."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    found: list[Instruction] = []
    stage = ""
    for line in joined.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage = arguments.split(" AS ")[-1].strip() if " AS " in arguments else arguments
        found.append(Instruction(keyword.upper(), arguments.strip(), stage))
    return found


def of(stage: str, keyword: str) -> list[Instruction]:
    return [i for i in instructions() if i.stage == stage and i.keyword == keyword]


def test_both_stages_share_one_python_image_of_the_tests_minor_version() -> None:
    froms = [i.arguments for i in instructions() if i.keyword == "FROM"]
    default = next(
        i.arguments for i in instructions() if i.keyword == "ARG" and i.arguments.startswith("PYTHON_IMAGE=")
    )
    minor = (ROOT / ".python-version").read_text().strip()

    assert froms == ["${PYTHON_IMAGE} AS build", "${PYTHON_IMAGE} AS runtime"]
    assert default.startswith(f"PYTHON_IMAGE=python:{minor}-")
    assert f"{sys.version_info.major}.{sys.version_info.minor}" == minor


def test_the_install_takes_one_service_and_the_kernel_from_the_lock() -> None:
    syncs = [i.arguments for i in of("build", "RUN") if "uv sync" in i.arguments]

    assert len(syncs) == 2
    for sync in syncs:
        assert {"--frozen", "--no-dev", "--no-editable", "--package"} <= set(shlex.split(sync))
    copied = " ".join(i.arguments for i in of("build", "COPY"))
    assert "services/${SERVICE}" in copied
    for other in SERVICES:
        assert f"services/{other}" not in copied


def test_the_runtime_runs_python_m_service_as_an_unprivileged_user() -> None:
    runtime = {i.keyword: i.arguments for i in instructions() if i.stage == "runtime"}

    assert json.loads(runtime["ENTRYPOINT"]) == ["/bin/sh", "-c", 'exec python -m "$SERVICE" "$@"', "--"]
    assert json.loads(runtime["CMD"]) == ["serve"]
    assert "SERVICE=${SERVICE}" in runtime["ENV"]
    user = runtime["USER"].split(":")[0]
    assert user.isdigit()
    assert int(user) != 0
    assert all("serve" in cli_commands(service) for service in SERVICES)


def test_the_healthcheck_asks_the_apps_liveness_on_its_port() -> None:
    healthcheck = of("runtime", "HEALTHCHECK")[0].arguments

    assert "os.environ['HTTP_PORT'] + '/health/live'" in healthcheck
    assert "HTTP_PORT=${HTTP_PORT}" in of("runtime", "ENV")[0].arguments
    assert all("/health/live" in app_paths(service) for service in SERVICES)


def ignored(relative: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps a path (or one of its folders) out of the build context."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, candidate) for candidate in candidates):
            return True
    return False


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not [p for p in patterns if p.startswith("!")], "exceptions are not replayed here"
    return patterns


def test_the_context_leaves_out_secrets_tests_and_local_state() -> None:
    patterns = dockerignore()

    for path in (".env", ".git/HEAD", ".venv/bin/python", "services/users/tests/conftest.py", "deploy/Dockerfile"):
        assert ignored(path, patterns), path
    for path in ("uv.lock", "pyproject.toml", "libs/fastmicro/src/fastmicro/web.py", "services/users/pyproject.toml"):
        assert not ignored(path, patterns), path


def copy_into_context(source: str, destination: str, build: Path, patterns: list[str]) -> None:
    """COPY <source> <destination>, relative to the repository root and to the build's WORKDIR."""
    origin = ROOT / source
    target = build / destination
    if origin.is_file():
        if not ignored(source, patterns):
            target = target / origin.name if destination.endswith("/") else target
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(origin, target)
        return
    for path in origin.rglob("*"):
        relative = path.relative_to(ROOT).as_posix()
        if path.is_file() and not ignored(relative, patterns):
            copy = target / path.relative_to(origin)
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, copy)


@dataclass(frozen=True)
class Built:
    venv: Path
    commands: list[str]
    help: str


def replay_build(service: str, workdir: Path) -> Built:
    """The build stage for `service`, in `workdir`, then `python -m <service> --help` from what it built."""
    build, venv = workdir / "src", workdir / "venv"
    build.mkdir()
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(venv), "UV_PYTHON_DOWNLOADS": "never"}
    env.pop("VIRTUAL_ENV", None)
    patterns = dockerignore()
    ran: list[str] = []
    for instruction in of("build", "ENV"):
        for name, value in re.findall(r"(\w+)=(\S+)", instruction.arguments):
            env.setdefault(name, value)
    env["UV_COMPILE_BYTECODE"] = "0"  # the image compiles; the replay saves the seconds
    for instruction in of("build", "COPY") + [i for i in of("build", "RUN") if "uv sync" in i.arguments]:
        arguments = instruction.arguments.replace("${SERVICE}", service).replace('"', "")
        if instruction.keyword == "COPY":
            *sources, destination = arguments.split()
            for source in sources:
                copy_into_context(source, destination, build, patterns)
            continue
        command = shlex.split(arguments[arguments.index("uv sync") :])
        uv = os.environ.get("UV") or shutil.which("uv")  # `uv run` (make test) names itself in UV
        assert uv, "uv is needed to replay the build"
        subprocess.run([uv, *command[1:]], cwd=build, env=env, check=True, capture_output=True)  # noqa: S603
        ran.append(shlex.join(command))
    answer = subprocess.run(  # noqa: S603 - the replayed image's own interpreter, as its entrypoint runs it
        [str(venv / "bin" / "python"), "-m", service, "--help"],
        capture_output=True,
        text=True,
        check=True,
        cwd=venv,
        env={"PATH": "/usr/bin:/bin", "HOME": str(venv)},
    )
    return Built(venv, ran, answer.stdout)


def order_of_the_build_stage() -> list[str]:
    return [i.keyword for i in instructions() if i.stage == "build" and i.keyword in {"COPY", "RUN"}]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Built]:
    """Each service's virtualenv as the build stage makes it (the three replayed side by side)."""
    assert order_of_the_build_stage()[-1] == "RUN", "the replay runs COPYs then syncs in the Dockerfile's order"
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {s: pool.submit(replay_build, s, tmp_path_factory.mktemp(s)) for s in SERVICES}
        return {service: future.result() for service, future in futures.items()}


@pytest.mark.parametrize("service", SERVICES)
def test_the_built_service_answers_python_m_service(images: dict[str, Built], service: str) -> None:
    assert "{serve,worker,migrate,topology,queues,dlq}" in images[service].help
    assert [command.split()[:2] for command in images[service].commands] == [["uv", "sync"], ["uv", "sync"]]


@pytest.mark.parametrize("service", SERVICES)
def test_the_built_service_holds_its_migrations_and_no_dev_tools(images: dict[str, Built], service: str) -> None:
    site = next((images[service].venv / "lib").glob("python3.*/site-packages"))
    installed = {path.name for path in site.iterdir()}
    others = set(SERVICES) - {service}

    assert list((site / service / "migrations" / "versions").glob("*.py")), "migrations are part of the package"
    assert {"fastmicro", "fastmicro_contracts", service} <= installed
    assert not installed & (set(DEV_TOOLS) | others)
    assert not (site / "fastmicro" / "testing").exists(), "test support (fastmicro-testing) never ships"
    assert "httpx" not in installed, "only test support needs an HTTP client"
    for package in ("fastmicro", "fastmicro_contracts", service):
        direct = next(site.glob(f"{package}-*.dist-info")) / "direct_url.json"
        assert not json.loads(direct.read_text()).get("dir_info", {}).get("editable", False), package
