"""deploy/k8s/create-secrets.sh makes every Secret the manifests reference, consistently, against a
stand-in kubectl that keeps Secrets in a folder (no cluster here)."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from fastmicro.tokens import PublicKeySet, SigningKey, TokenSigner, TokenVerifier

from .stack import OVERLAYS, ROOT, SERVICES, find, overlay

SCRIPT = ROOT / "deploy" / "k8s" / "create-secrets.sh"

#: Understands exactly the calls the script makes: get secret [-o jsonpath={.data.KEY}],
#: create secret generic NAME --type=T --from-file=KEY=PATH... --dry-run=client -o yaml, apply -f -.
FAKE_KUBECTL = """
import base64, json, pathlib, sys
store = pathlib.Path(sys.argv[0]).parent.parent / "secrets"
args = sys.argv[1:]
assert args[0] == "--namespace", args
args = args[2:]
if args[:2] == ["get", "secret"]:
    path = store / (args[2] + ".json")
    if not path.exists():
        sys.exit(1)
    if len(args) > 3:
        key = args[4].removeprefix("jsonpath={.data.").removesuffix("}")
        sys.stdout.write(json.loads(path.read_text())["data"][key])
elif args[:3] == ["create", "secret", "generic"]:
    data, kind = {}, "Opaque"
    for arg in args[4:]:
        if arg.startswith("--type="):
            kind = arg.split("=", 1)[1]
        elif arg.startswith("--from-file="):
            key, _, source = arg.split("=", 1)[1].partition("=")
            data[key] = base64.b64encode(pathlib.Path(source).read_bytes()).decode()
    print(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": args[3]}, "type": kind, "data": data}))
elif args[:2] == ["apply", "-f"]:
    secret = json.loads(sys.stdin.read())
    (store / (secret["metadata"]["name"] + ".json")).write_text(json.dumps(secret))
else:
    sys.exit(f"unexpected kubectl call: {args}")
"""


def seed(store: Path, name: str, **data: str) -> None:
    encoded = {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}
    store.joinpath(f"{name}.json").write_text(json.dumps({"metadata": {"name": name}, "data": encoded}))


def secrets_in(store: Path) -> dict[str, dict[str, Any]]:
    found = {}
    for path in store.glob("*.json"):
        secret = json.loads(path.read_text())
        decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
        found[secret["metadata"]["name"]] = {"type": secret.get("type"), "data": decoded}
    return found


def make_cluster(tmp_path: Path) -> Path:
    """A folder of Secrets and a kubectl in front of it; the RabbitMQ operator's Secret is there already."""
    (tmp_path / "bin").mkdir()
    (tmp_path / "secrets").mkdir()
    kubectl = tmp_path / "bin" / "kubectl"
    kubectl.write_text(f"#!{sys.executable}\n{FAKE_KUBECTL}")
    kubectl.chmod(0o755)
    (tmp_path / "bin" / "python3").symlink_to(sys.executable)  # the script's python3, without a slow shim
    seed(tmp_path / "secrets", "fastmicro-rabbitmq-default-user", username="default_user_x", password="p@ss/w+rd")
    return tmp_path


@pytest.fixture
def cluster(tmp_path: Path) -> Path:
    return make_cluster(tmp_path)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """The Secrets of one first run."""
    cluster = make_cluster(tmp_path_factory.mktemp("cluster"))
    create_secrets(cluster)
    return secrets_in(cluster / "secrets")


def create_secrets(cluster: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{cluster / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    bash = shutil.which("bash")
    assert bash, "the script is a bash script"
    return subprocess.run(  # noqa: S603 - the project's own script
        [bash, str(SCRIPT), "fastmicro"],
        env={"PATH": path, "HOME": str(cluster), **env},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )


def test_it_makes_every_secret_the_manifests_reference(made: dict[str, dict[str, Any]]) -> None:
    for name in OVERLAYS:
        documents = overlay(name)
        for document in documents:
            if document["kind"] not in {"Deployment", "Job"}:
                continue
            for variable in document["spec"]["template"]["spec"]["containers"][0].get("env", []):
                reference = variable["valueFrom"]["secretKeyRef"]
                if reference.get("optional"):
                    continue
                assert reference["key"] in made[reference["name"]]["data"], (document["metadata"]["name"], reference)
        for role in find(documents, "Cluster", "fastmicro-pg")["spec"]["managed"]["roles"]:
            assert made[role["passwordSecret"]["name"]]["data"]["username"] == role["name"]


def test_each_database_url_carries_its_roles_password(made: dict[str, dict[str, Any]]) -> None:
    for service in SERVICES:
        role = made[f"fastmicro-pg-{service}"]
        url = urlsplit(made[f"{service}-database"]["data"]["url"])
        assert role["type"] == "kubernetes.io/basic-auth"
        assert (url.scheme, url.hostname, url.port, url.path) == (
            "postgresql+asyncpg",
            "fastmicro-pg-rw",
            5432,
            f"/{service}",
        )
        assert (url.username, unquote(url.password or "")) == (service, role["data"]["password"])
        assert len(role["data"]["password"]) >= 32
    assert len({made[f"fastmicro-pg-{service}"]["data"]["password"] for service in SERVICES}) == len(SERVICES)


def test_the_signing_key_and_the_public_set_are_one_pair(made: dict[str, dict[str, Any]]) -> None:
    signing = SigningKey.from_json(made["fastmicro-jwt-signing"]["data"]["key"])
    public = PublicKeySet.from_json(made["fastmicro-jwt-public"]["data"]["keys"])

    token = TokenSigner(signing, issuer="i", audience="a", ttl_seconds=60).issue(uuid.uuid4()).access_token

    assert TokenVerifier(public, issuer="i", audience="a").verify(token)
    assert list(public.keys) == [signing.kid]  # and no private part: from_json refuses one


def test_the_broker_url_is_the_operators_user_quoted(made: dict[str, dict[str, Any]]) -> None:
    url = urlsplit(made["fastmicro-amqp"]["data"]["url"])

    assert (url.scheme, url.hostname, url.port) == ("amqp", "fastmicro-rabbitmq", 5672)
    assert (unquote(url.username or ""), unquote(url.password or "")) == ("default_user_x", "p@ss/w+rd")


def test_it_keeps_what_exists_remakes_what_was_lost_and_adds_smtp_only_when_given(cluster: Path) -> None:
    create_secrets(cluster)
    first = secrets_in(cluster / "secrets")
    assert "notifications-smtp" not in first

    again = create_secrets(cluster).stdout
    assert secrets_in(cluster / "secrets") == first
    assert "created" not in again

    (cluster / "secrets" / "orders-database.json").unlink()  # remade from the role's password
    create_secrets(cluster, SMTP_USERNAME="mailer", SMTP_PASSWORD="relay-pw")
    last = secrets_in(cluster / "secrets")
    assert last.pop("notifications-smtp")["data"] == {"username": "mailer", "password": "relay-pw"}
    assert last == first
