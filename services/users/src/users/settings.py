from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from fastmicro.settings import ServiceSettings, is_example_key
from fastmicro.tokens import DEV_SIGNING_KEY, SigningKey


class UsersSettings(ServiceSettings):
    service_name: str = "users"
    http_port: int = 8001
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/users"

    # argon2id cost (RFC 9106 second recommendation by default); lower only in tests.
    password_hash_time_cost: int = Field(default=3, ge=1)
    password_hash_memory_kib: int = Field(default=65536, ge=8)
    password_hash_parallelism: int = Field(default=4, ge=1)

    jwt_signing_key: SecretStr = Field(
        default=SecretStr(DEV_SIGNING_KEY),
        description="The private JWK (Ed25519 or P-256, with its `kid`) users signs access tokens with.",
    )
    refresh_token_ttl_days: float = Field(
        default=14.0, gt=0, le=365, description="How long a session lasts without being used (each use renews it)."
    )

    login_failures_per_account_and_address: int = Field(
        default=5, ge=1, description="Failed logins for one account from one address within the window, then 429."
    )
    login_failures_per_account: int = Field(
        default=100,
        ge=1,
        description="Failed logins for one account from all addresses within the window, then 429.",
    )
    login_failures_per_address: int = Field(
        default=50, ge=1, description="Failed logins from one client address (any account) within the window, then 429."
    )
    login_failure_window_seconds: float = Field(default=900.0, gt=0, le=86_400)

    def signing_key(self) -> SigningKey:
        return SigningKey.from_json(self.jwt_signing_key.get_secret_value())

    @model_validator(mode="after")
    def _signing_key_is_published(self) -> Self:
        key = self.signing_key()  # UnusableKey is a ValueError: reported as a settings error
        published = self.public_keys().keys.get(key.kid)
        if published is None or published.jwk != key.public.jwk:
            raise ValueError(
                f"JWT_PUBLIC_KEYS must hold the public half of JWT_SIGNING_KEY (kid {key.kid!r}):"
                " tokens signed by a key no service knows would be refused everywhere"
            )
        if self.environment == "production" and is_example_key(key.kid, key.public.jwk.get("x")):
            raise ValueError("JWT_SIGNING_KEY is the development key: set a private one in production")
        return self
