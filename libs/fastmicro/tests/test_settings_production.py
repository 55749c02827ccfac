"""Production refuses what ships in the repository (the development key, `.env.example`) and unsafe defaults."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from fastmicro.settings import DEV_PUBLIC_KEYS, EXAMPLE_SECRET_MARK, ServiceSettings
from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import DEV_SIGNING_KEY, PublicKeySet, SigningKey

PRIVATE_KEYS = PublicKeySet.of(SigningKey.from_json(new_signing_key("prod-2026-12"))).to_json()
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
        "jwt_public_keys": PRIVATE_KEYS,
        **overrides,
    }
    return ServiceSettings(_env_file=None, **values)  # type: ignore[arg-type]


def test_the_development_key_carries_the_example_mark() -> None:
    assert EXAMPLE_SECRET_MARK in SigningKey.from_json(DEV_SIGNING_KEY).kid


def test_production_accepts_private_settings() -> None:
    settings = production()

    assert settings.environment == "production"


def _renamed_dev_key() -> str:
    document = json.loads(DEV_PUBLIC_KEYS)
    document["keys"][0]["kid"] = "prod-1"
    return json.dumps(document)


@pytest.mark.parametrize(
    "keys",
    [
        DEV_PUBLIC_KEYS,
        _renamed_dev_key(),
        PublicKeySet.of(SigningKey.from_json(new_signing_key(f"{EXAMPLE_SECRET_MARK}-1"))).to_json(),
        PublicKeySet.of(
            SigningKey.from_json(new_signing_key("prod-2026-12")), SigningKey.from_json(DEV_SIGNING_KEY)
        ).to_json(),
    ],
    ids=["dev-key", "dev-key-renamed", "example-kid", "dev-key-beside-a-private-one"],
)
def test_production_refuses_the_development_key(keys: str) -> None:
    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEYS holds the development key"):
        production(jwt_public_keys=keys)


def test_production_refuses_the_default_key_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")

    with pytest.raises(ValidationError, match="JWT_PUBLIC_KEYS holds the development key"):
        ServiceSettings(
            service_name="kernel-test", database_url=PRIVATE_DATABASE_URL, amqp_url=PRIVATE_AMQP_URL, _env_file=None
        )


@pytest.mark.parametrize(
    ("field", "url", "message"),
    [
        ("database_url", "postgresql+asyncpg://postgres@postgres:5432/users", "DATABASE_URL has no password"),
        ("database_url", "postgresql+asyncpg://users:@postgres:5432/users", "DATABASE_URL has no password"),
        ("amqp_url", "amqp://rabbitmq:5672/", "AMQP_URL has no password"),
        ("amqp_url", "amqp://guest:guest@rabbitmq:5672/", "AMQP_URL uses the broker's default guest:guest"),
    ],
    ids=["database-passwordless-superuser", "database-empty-password", "broker-no-credentials", "broker-guest"],
)
def test_production_refuses_unsafe_connections(field: str, url: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        production(**{field: url})


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
