"""Production refuses the secrets that ship in the repository: the dev JWT secret and every `.env.example` value."""

from __future__ import annotations

import pytest
from pydantic import SecretStr, ValidationError

from fastmicro.settings import DEV_JWT_SECRET, EXAMPLE_SECRET_MARK, ServiceSettings

PRIVATE_SECRET = "p7Qz" * 16
PRIVATE_DATABASE_URL = "postgresql+asyncpg://users:s3cr3t-pw@postgres:5432/users"
PRIVATE_AMQP_URL = "amqp://fastmicro:s3cr3t-pw@rabbitmq:5672/"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own environment must not decide these tests."""
    for name in ServiceSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def production(**overrides: object) -> ServiceSettings:
    values: dict[str, object] = {
        "service_name": "kernel-test",
        "environment": "production",
        "database_url": PRIVATE_DATABASE_URL,
        "amqp_url": PRIVATE_AMQP_URL,
        "jwt_secret": SecretStr(PRIVATE_SECRET),
        **overrides,
    }
    return ServiceSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_the_dev_secret_carries_the_example_mark() -> None:
    assert EXAMPLE_SECRET_MARK in DEV_JWT_SECRET


def test_production_accepts_private_secrets() -> None:
    settings = production()

    assert settings.environment == "production"


@pytest.mark.parametrize(
    "secret",
    [DEV_JWT_SECRET, f"{EXAMPLE_SECRET_MARK}-" + "x" * 40, "x" * 30 + EXAMPLE_SECRET_MARK + "x" * 30],
    ids=["dev-secret", "example-prefix", "example-inside"],
)
def test_production_refuses_an_example_jwt_secret(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        production(jwt_secret=SecretStr(secret))


@pytest.mark.parametrize(
    ("field", "url", "message"),
    [
        ("database_url", f"postgresql+asyncpg://users:{EXAMPLE_SECRET_MARK}-users@postgres:5432/users", "DATABASE_URL"),
        ("database_url", "postgresql+asyncpg://users:change%2Dme@postgres:5432/users", "DATABASE_URL"),
        ("amqp_url", f"amqp://fastmicro:{EXAMPLE_SECRET_MARK}-rabbitmq@rabbitmq:5672/", "AMQP_URL"),
    ],
    ids=["database", "database-percent-encoded", "broker"],
)
def test_production_refuses_an_example_password_in_a_url(field: str, url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=f"{message} carries an example password"):
        production(**{field: url})


def test_the_mark_elsewhere_in_a_url_is_not_a_password() -> None:
    settings = production(database_url="postgresql+asyncpg://change-me:s3cr3t@change-me.internal:5432/change-me")

    assert settings.database_url.endswith("/change-me")


def test_development_accepts_the_example_secrets() -> None:
    settings = ServiceSettings(
        service_name="kernel-test",
        database_url=f"postgresql+asyncpg://users:{EXAMPLE_SECRET_MARK}-users@postgres:5432/users",
        amqp_url=f"amqp://fastmicro:{EXAMPLE_SECRET_MARK}-rabbitmq@rabbitmq:5672/",
        _env_file=None,
    )

    assert settings.environment == "development"
