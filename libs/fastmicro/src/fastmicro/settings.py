"""Settings every service shares; a service subclasses `ServiceSettings` and adds its own."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The signing secret that ships in the repository for development. Never valid in production.
DEV_JWT_SECRET = "dev-only-secret-change-me-0123456789abcdef"  # noqa: S105
#: Every secret that ships in the repository (the one above, `.env.example`) carries this mark;
#: production refuses a JWT secret, or a DATABASE_URL / AMQP_URL password, that carries it.
EXAMPLE_SECRET_MARK = "change-me"  # noqa: S105 - a marker, not a secret

Environment = Literal["development", "test", "production"]
_MIN_SECRET_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}


class ServiceSettings(BaseSettings):
    """Read from the environment (and `.env`); names are the upper-cased field names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    service_name: str
    environment: Environment = "development"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)

    serve_roles: bool = Field(
        default=True,
        description=(
            "Whether `serve` also runs the service's background roles (outbox relay, consumers, sender) beside"
            " the HTTP API. Set false where a `worker` process runs them: under load the API's event loop"
            " would otherwise delay them."
        ),
    )

    database_url: str
    db_pool_size: int = Field(default=15, ge=1, description="Connections each process keeps open, once opened.")
    db_max_overflow: int = Field(
        default=0,
        ge=0,
        description=(
            "Connections opened past the pool in a burst and closed as soon as they are returned. Under"
            " steady load above the pool each one is a new connection (and PostgreSQL backend) every time:"
            " size the pool instead."
        ),
    )
    db_pool_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for a pooled connection.")
    db_connect_timeout: float = Field(default=3.0, gt=0)
    db_statement_timeout_ms: int = Field(default=10_000, ge=0)

    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    #: Prefix for every exchange and queue name. Empty in production (the contract's names);
    #: tests set one so they never share topology with a running stack.
    amqp_namespace: str = ""

    outbox_batch_size: int = Field(default=200, ge=1, le=5000)
    outbox_poll_interval: float = Field(default=2.0, gt=0, description="Fallback poll when no NOTIFY arrives.")
    outbox_max_backoff: float = Field(default=10.0, gt=0)

    outbox_retention_hours: float = Field(
        default=72.0, gt=0, description="Hours a published outbox row is kept (for inspection) before it is deleted."
    )
    inbox_retention_days: float = Field(
        default=14.0,
        gt=0,
        description=(
            "Days a processed inbox row is kept. The row is what makes a redelivered message a no-op, so it must"
            " outlive any redelivery: retries, dead-letter replays, a message held in a queue through an outage."
        ),
    )
    retention_interval: float = Field(default=300.0, gt=0, description="Seconds between two retention purges.")
    retention_batch_size: int = Field(
        default=1000, ge=1, le=50_000, description="Rows deleted per transaction, so no purge holds a long one."
    )

    consumer_prefetch: int = Field(default=16, ge=1, le=1000)
    consumer_retry_delays: list[float] = Field(
        default=[1.0, 5.0, 30.0, 120.0], min_length=1, description="Seconds before each retry of a failed handler."
    )
    consumer_max_message_bytes: int = Field(
        default=256 * 1024,
        ge=1024,
        description=(
            "The largest message body a consumer reads. A bigger one is dead-lettered unparsed (reason"
            " `message too large`). The contract's biggest event, an OrderPlaced of 100 lines, is under 40 KB;"
            " past the limit, parsing and storing whatever a sender put on the bus is all a message would buy."
        ),
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "console"] = "console"

    jwt_secret: SecretStr = SecretStr(DEV_JWT_SECRET)
    jwt_algorithm: Literal["HS256", "HS384", "HS512"] = "HS256"
    jwt_issuer: str = "fastmicro-users"
    jwt_audience: str = "fastmicro"
    jwt_ttl_seconds: int = Field(default=3600, ge=60)

    @model_validator(mode="after")
    def _inbox_outlives_the_retries(self) -> Self:
        if self.inbox_retention_days * 86_400 <= sum(self.consumer_retry_delays):
            raise ValueError("INBOX_RETENTION_DAYS must be longer than all the consumer retry delays together")
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Self:
        if self.environment == "production":
            secret = self.jwt_secret.get_secret_value()
            needed = _MIN_SECRET_BYTES[self.jwt_algorithm]  # RFC 7518 3.2: at least the hash size
            if secret == DEV_JWT_SECRET or EXAMPLE_SECRET_MARK in secret or len(secret.encode()) < needed:
                raise ValueError(
                    f"JWT_SECRET must be set to a private value of at least {needed} bytes for {self.jwt_algorithm}"
                    " in production"
                )
            for name, url in (("DATABASE_URL", self.database_url), ("AMQP_URL", self.amqp_url)):
                if EXAMPLE_SECRET_MARK in unquote(urlsplit(url).password or ""):
                    raise ValueError(f"{name} carries an example password ({EXAMPLE_SECRET_MARK}): set a private one")
        return self
