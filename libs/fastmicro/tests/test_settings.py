"""ServiceSettings: read from the environment, and no development secret in production."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from fastmicro.settings import DEV_PUBLIC_KEYS, ServiceSettings
from fastmicro.testing.tokens import new_signing_key
from fastmicro.tokens import PublicKeySet, SigningKey

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
    keys = PublicKeySet.of(SigningKey.from_json(new_signing_key("env-1"))).to_json()
    monkeypatch.setenv("JWT_PUBLIC_KEYS", keys)
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", '["10.0.0.0/8"]')

    settings = ServiceSettings(_env_file=None)  # required fields come from the env

    assert settings.service_name == "from-env"
    assert settings.database_url == DATABASE_URL
    assert settings.http_port == 9001
    assert settings.log_format == "json"
    assert set(settings.public_keys().keys) == {"env-1"}
    assert settings.forwarded_allow_ips == ["10.0.0.0/8"]
    assert settings.environment == "development"


def test_reads_a_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"SERVICE_NAME=from-file\nDATABASE_URL={DATABASE_URL}\nDB_POOL_SIZE=3\n")

    settings = ServiceSettings(_env_file=env_file)  # required fields come from the file

    assert (settings.service_name, settings.database_url, settings.db_pool_size) == ("from-file", DATABASE_URL, 3)


def test_rejects_out_of_range_values() -> None:
    with pytest.raises(ValidationError, match="http_port"):
        ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, http_port=0, _env_file=None)


def test_development_verifies_with_the_development_key() -> None:
    settings = ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, _env_file=None)

    assert settings.jwt_public_keys == DEV_PUBLIC_KEYS
    assert set(settings.public_keys().keys) == {"dev-only-change-me"}


def test_an_unusable_public_key_set_is_a_settings_error() -> None:
    private = new_signing_key("k1")

    with pytest.raises(ValidationError, match="private part"):
        ServiceSettings(
            service_name="kernel-test",
            database_url=DATABASE_URL,
            jwt_public_keys=f'{{"keys": [{private}]}}',
            _env_file=None,
        )


@pytest.mark.parametrize("ttl", [59, 3601])
def test_access_tokens_live_minutes(ttl: int) -> None:
    with pytest.raises(ValidationError, match="jwt_ttl_seconds"):
        ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, jwt_ttl_seconds=ttl, _env_file=None)


def test_a_key_is_waited_for_within_the_statement_timeout() -> None:
    """The wait for a key is a lock wait inside a statement: the statement timeout would cut it short (a 500)."""

    def waiting(seconds: float, timeout_ms: int) -> ServiceSettings:
        return ServiceSettings(
            service_name="kernel-test",
            database_url=DATABASE_URL,
            idempotency_wait_seconds=seconds,
            db_statement_timeout_ms=timeout_ms,
            _env_file=None,
        )

    assert waiting(2, 2_001).idempotency_wait_seconds == 2
    assert waiting(20, 0).idempotency_wait_seconds == 20  # no statement timeout
    with pytest.raises(ValidationError, match="IDEMPOTENCY_WAIT_SECONDS must be shorter"):
        waiting(2, 2_000)


def test_api_processes_default_to_one() -> None:
    settings = ServiceSettings(service_name="kernel-test", database_url=DATABASE_URL, _env_file=None)
    assert (settings.http_workers, settings.idempotency_key_hours, settings.idempotency_wait_seconds) == (1, 24, 2)
