"""docker-compose.yml agrees with the code: settings, ports, probes, commands and start order."""

from __future__ import annotations

import secrets
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from pydantic import ValidationError

from fastmicro.settings import EXAMPLE_SECRET_MARK
from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import PublicKeySet, SigningKey

from .stack import (
    DEPLOYMENT_REQUIRED,
    ROOT,
    SERVICE_REQUIRED,
    SERVICES,
    Document,
    app_paths,
    cli_commands,
    compose_config,
    env_file_values,
    env_names,
    python_m_commands,
    required_env,
    settings_class,
)

ENV_EXAMPLE = ROOT / ".env.example"
SECRET_NAMES = ("PASSWORD", "SECRET", "_KEY", "_TOKEN")


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> Document:
    return compose_config(ENV_EXAMPLE, tmp_path_factory.mktemp("home"))


def services_of(compose: Document) -> dict[str, Document]:
    services: dict[str, Document] = compose["services"]
    return services


def set_environment(monkeypatch: pytest.MonkeyPatch, service: str, environment: dict[str, str]) -> None:
    for name in env_names(service):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)


def test_the_stack_has_its_infrastructure_a_migrate_step_an_api_and_a_worker_per_service(compose: Document) -> None:
    parts = {f"{s}-{part}" for s in SERVICES for part in ("migrate", "worker")}
    looking = {"jaeger", "prometheus", "grafana"}  # traces, metrics, the dashboard
    expected = {"postgres", "rabbitmq", "mailpit"} | looking | set(SERVICES) | parts

    assert set(services_of(compose)) == expected


@pytest.mark.parametrize("service", SERVICES)
def test_every_variable_set_is_a_setting_and_every_required_one_is_set(compose: Document, service: str) -> None:
    for name in (service, f"{service}-migrate", f"{service}-worker"):
        environment = set(services_of(compose)[name]["environment"])

        assert environment <= env_names(service), f"{name} sets variables its settings ignore"
        missing = (required_env(service) | DEPLOYMENT_REQUIRED | SERVICE_REQUIRED.get(service, set())) - environment
        assert not missing, f"{name} leaves {missing} unset"


@pytest.mark.parametrize("service", SERVICES)
def test_the_settings_accept_the_values_set(
    compose: Document, service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    environment = services_of(compose)[service]["environment"]
    set_environment(monkeypatch, service, environment)

    settings = settings_class(service)(_env_file=None)

    assert settings.service_name == service
    assert settings.http_host == "0.0.0.0"  # noqa: S104 - reachable from the other containers
    assert settings.http_port == SERVICES[service]
    assert settings.log_format == "json"
    database = urlsplit(settings.database_url)
    assert (database.scheme, database.hostname, database.path) == ("postgresql+asyncpg", "postgres", f"/{service}")
    assert urlsplit(settings.amqp_url).hostname == "rabbitmq"


def test_notifications_send_mail_to_mailpit(compose: Document) -> None:
    environment = services_of(compose)["notifications"]["environment"]

    assert (environment["SMTP_HOST"], environment["SMTP_PORT"]) == ("mailpit", "1025")


def test_only_users_can_sign_and_every_service_verifies_with_its_public_key(compose: Document) -> None:
    services = services_of(compose)
    public_sets = {services[name]["environment"]["JWT_PUBLIC_KEYS"] for name in SERVICES}
    holders = {name for name, service in services.items() if "JWT_SIGNING_KEY" in service.get("environment", {})}

    assert len(public_sets) == 1
    assert holders == {"users", "users-migrate", "users-worker"}
    signing = SigningKey.from_json(services["users"]["environment"]["JWT_SIGNING_KEY"])
    assert PublicKeySet.from_json(public_sets.pop()).keys[signing.kid] == signing.public


@pytest.mark.parametrize("service", SERVICES)
def test_each_image_is_built_for_its_service_and_port(compose: Document, service: str) -> None:
    for name in (service, f"{service}-migrate"):
        build = services_of(compose)[name]["build"]

        assert Path(build["context"]) == ROOT
        assert build["dockerfile"] == "deploy/Dockerfile"
        assert build["args"] == {"SERVICE": service, "HTTP_PORT": str(SERVICES[service])}


@pytest.mark.parametrize("service", SERVICES)
def test_ports_match_the_contract_and_the_settings(compose: Document, service: str) -> None:
    definition = services_of(compose)[service]
    port = SERVICES[service]

    assert definition["environment"]["HTTP_PORT"] == str(port)
    assert [(p["target"], p["published"]) for p in definition["ports"]] == [(port, str(port))]


@pytest.mark.parametrize("service", SERVICES)
def test_the_healthcheck_asks_readiness_of_the_app(compose: Document, service: str) -> None:
    test = " ".join(services_of(compose)[service]["healthcheck"]["test"])

    assert f"http://127.0.0.1:{SERVICES[service]}/health/ready" in test
    assert "/health/ready" in app_paths(service)


@pytest.mark.parametrize("service", SERVICES)
def test_commands_exist_in_the_services_cli(compose: Document, service: str) -> None:
    serve = services_of(compose)[service]
    migrate = services_of(compose)[f"{service}-migrate"]
    steps = python_m_commands(" ".join(migrate["entrypoint"] + migrate["command"]))

    assert serve["command"] == ["serve"]
    assert migrate["entrypoint"] == ["/bin/sh", "-c"]
    assert steps == [(service, "migrate"), (service, "topology")]
    assert {"serve", "migrate", "topology"} <= cli_commands(service)


@pytest.mark.parametrize("service", SERVICES)
def test_the_api_leaves_the_background_roles_to_a_worker_of_the_same_settings(compose: Document, service: str) -> None:
    api, worker = services_of(compose)[service], services_of(compose)[f"{service}-worker"]

    assert api["environment"]["SERVE_ROLES"] == "false"
    assert api["environment"]["HTTP_WORKERS"] == "1"  # API processes on the port: HTTP_WORKERS from .env, else 1
    assert worker["command"] == ["worker"]
    assert {**worker["environment"], "SERVE_ROLES": "false", "HTTP_WORKERS": "1"} == api["environment"]
    assert worker["depends_on"] == api["depends_on"]
    assert "ports" not in worker
    assert worker["healthcheck"] == {"disable": True}  # no HTTP in a worker
    assert {"worker"} <= cli_commands(service)


@pytest.mark.parametrize("service", SERVICES)
def test_services_start_after_every_migrate_step_and_healthy_infrastructure(compose: Document, service: str) -> None:
    conditions = {name: dep["condition"] for name, dep in services_of(compose)[service]["depends_on"].items()}
    migrate = {name: dep["condition"] for name, dep in services_of(compose)[f"{service}-migrate"]["depends_on"].items()}

    # every topology first: no service publishes before the queues that consume its events exist
    assert {f"{s}-migrate": "service_completed_successfully" for s in SERVICES}.items() <= conditions.items()
    assert {"postgres": "service_healthy", "rabbitmq": "service_healthy"}.items() <= conditions.items()
    assert migrate == {"postgres": "service_healthy", "rabbitmq": "service_healthy"}
    assert services_of(compose)[f"{service}-migrate"]["restart"] == "no"


def test_postgres_creates_each_service_database_with_the_password_its_service_uses(compose: Document) -> None:
    postgres = services_of(compose)["postgres"]
    init = (ROOT / "deploy" / "postgres" / "init-databases.sh").read_text()

    assert "/docker-entrypoint-initdb.d/" in " ".join(v["target"] for v in postgres["volumes"])
    assert "pg_isready" in postgres["healthcheck"]["test"]
    for service in SERVICES:
        url = urlsplit(services_of(compose)[service]["environment"]["DATABASE_URL"])
        assert (url.username, url.password) == (service, postgres["environment"][f"{service.upper()}_DB_PASSWORD"])
        assert f'create_service_database {service} "${{{service.upper()}_DB_PASSWORD:?}}"' in init


def test_the_broker_user_is_the_one_the_services_use(compose: Document) -> None:
    rabbitmq = services_of(compose)["rabbitmq"]["environment"]
    url = urlsplit(services_of(compose)["users"]["environment"]["AMQP_URL"])

    assert (url.username, url.password) == (rabbitmq["RABBITMQ_DEFAULT_USER"], rabbitmq["RABBITMQ_DEFAULT_PASS"])


def test_every_example_secret_carries_the_mark_production_refuses() -> None:
    values = env_file_values(ENV_EXAMPLE)
    example_secrets = {name: value for name, value in values.items() if name.endswith(SECRET_NAMES)}

    assert set(example_secrets) >= {"JWT_SIGNING_KEY", "POSTGRES_PASSWORD", "RABBITMQ_PASSWORD"}
    assert all(EXAMPLE_SECRET_MARK in value for value in example_secrets.values()), example_secrets
    assert values["ENVIRONMENT"] == "development"


@pytest.mark.parametrize("service", SERVICES)
def test_production_refuses_to_start_with_the_example_secrets(
    compose: Document, service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environment(monkeypatch, service, {**services_of(compose)[service]["environment"], "ENVIRONMENT": "production"})

    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEYS holds the development key"):
        settings_class(service)(_env_file=None)


@pytest.mark.parametrize("service", SERVICES)
def test_production_starts_with_private_secrets(service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    private = {
        name: (secrets.token_hex(32) if name.endswith(SECRET_NAMES) else value)
        for name, value in env_file_values(ENV_EXAMPLE).items()
    }
    private["ENVIRONMENT"] = "production"
    key = new_signing_key("prod-test")
    private["JWT_SIGNING_KEY"] = f"'{key}'"
    private["JWT_PUBLIC_KEYS"] = f"'{PublicKeySet.of(SigningKey.from_json(key)).to_json()}'"
    env_file = tmp_path / "production.env"
    env_file.write_text("".join(f"{name}={value}\n" for name, value in private.items()))
    compose = compose_config(env_file, tmp_path)
    set_environment(monkeypatch, service, services_of(compose)[service]["environment"])

    settings = settings_class(service)(_env_file=None)

    assert settings.environment == "production"
