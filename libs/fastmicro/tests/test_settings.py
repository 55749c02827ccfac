"""ServiceSettings: read from the environment, and no development secret in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from fastmicro.settings import DEV_JWT_SECRET, ServiceSettings

DATABASE_URL = "postgresql+asyncpg://kernel@127.0.0.1:5432/kernel"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's own environment must not decide these tests."""
    for name in ServiceSettings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def test_reads_upper_cased_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "from-env")
    monkeypatch.setenv("DATABASE_URL", DATABASE_URL)
    monkeypatch.setenv("HTTP_PORT", "9001")
    monkeypatch.setenv("LOG_FORMAT", "json")
    monkeypatch.setenv("JWT_SECRET", "e" * 40)

    settings = ServiceSettings(_env_file=None)  # required fields come from the env

    assert settings.service_name == "from-env"
    assert settings.database_url == DATABASE_URL
    assert settings.http_port == 9001
    assert settings.log_format == "json"
    assert settings.jwt_secret.get_secret_value() == "e" * 40
    assert settings.environment == "development"


def test_reads_a_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"SERVICE_NAME=from-file\nDATABASE_URL={DATABASE_URL}\nDB_POOL_SIZE=3\n")

    settings = ServiceSettings(_env_file=env_file)  # required fields come from the file

    assert (settings.service_name, settings.database_url, settings.db_pool_size) == ("from-file", DATABASE_URL, 3)


def test_rejects_out_of_range_values() -> None:
    with pytest.raises(ValidationError, match="http_port"):
        ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, http_port=0, _env_file=None)


def test_development_accepts_the_dev_secret() -> None:
    settings = ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, _env_file=None)

    assert settings.jwt_secret.get_secret_value() == DEV_JWT_SECRET


@pytest.mark.parametrize("secret", [DEV_JWT_SECRET, "x" * 31, ""], ids=["dev-secret", "31-characters", "empty"])
def test_production_refuses_dev_and_short_secrets(secret: str) -> None:
    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        ServiceSettings(
            service_name="kernel-test",
            database_url=DATABASE_URL,
            environment="production",
            jwt_secret=SecretStr(secret),
            _env_file=None,
        )


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENVIRONMENT", "production")

    with pytest.raises(ValidationError, match="JWT_SECRET must be set"):
        ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, _env_file=None)


def test_production_accepts_a_private_secret_of_32_characters() -> None:
    secret = "p" * 32

    settings = ServiceSettings(
        service_name="kernel-test",
        database_url=DATABASE_URL,
        environment="production",
        jwt_secret=SecretStr(secret),
        _env_file=None,
    )

    assert settings.environment == "production"
    assert settings.jwt_secret.get_secret_value() == secret
    assert secret not in repr(settings)


def test_production_refuses_a_secret_shorter_than_its_algorithm_needs() -> None:
    with pytest.raises(ValidationError):
        ServiceSettings(
            service_name="kernel-test",
            database_url=DATABASE_URL,
            environment="production",
            jwt_algorithm="HS512",
            jwt_secret=SecretStr("p" * 32),
            _env_file=None,
        )
