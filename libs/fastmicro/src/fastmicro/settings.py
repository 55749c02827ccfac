"""Settings every service shares; a service subclasses `ServiceSettings` and adds its own."""

from __future__ import annotations

from typing import Literal, Self
from urllib.parse import unquote, urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from fastmicro.queues import DEFAULT_DELIVERY_LIMIT, QueueType
from fastmicro.tokens import DEV_SIGNING_KEY, MAX_ACCESS_TOKEN_SECONDS, PublicKeySet, SigningKey

#: Every secret that ships in the repository (the development key, `.env.example`) carries this
#: mark; production refuses a key whose `kid`, or a DATABASE_URL / AMQP_URL password, carries it.
EXAMPLE_SECRET_MARK = "change-me"  # noqa: S105 - a marker, not a secret
#: The public half of the development key: what every service verifies with unless told otherwise.
_DEV_KEY = SigningKey.from_json(DEV_SIGNING_KEY)
DEV_PUBLIC_KEYS = PublicKeySet.of(_DEV_KEY).to_json()
_DEV_PUBLIC_X = _DEV_KEY.public.jwk["x"]

Environment = Literal["development", "test", "production"]


class ServiceSettings(BaseSettings):
    """Read from the environment (and `.env`); names are the upper-cased field names."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    service_name: str
    environment: Environment = "development"

    http_host: str = "127.0.0.1"
    http_port: int = Field(default=8000, ge=1, le=65535)
    forwarded_allow_ips: list[str] = Field(
        default=[],
        description=(
            "Addresses (or CIDR ranges) of the proxies whose X-Forwarded-For is believed for the client"
            " address (uvicorn's --forwarded-allow-ips). Empty: the connection's peer is the client."
        ),
    )

    http_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description=(
            "API processes `serve` runs on the one port (uvicorn's --workers), each with its own pool of"
            " DB_POOL_SIZE connections; their /metrics add up across them (docs/operations.md)."
        ),
    )

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
    queue_type: QueueType = Field(
        default="classic",
        description=(
            "`quorum` (replicated over the broker's nodes: where it has several, as the prod overlay sets it) or"
            " `classic` (one node: on a single node a quorum queue replicates nothing and halves end-to-end"
            " capacity). A queue's type cannot change in place: switch with `python -m <service> queues migrate`."
        ),
    )

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

    idempotency_key_hours: float = Field(
        default=24.0,
        gt=0,
        description=(
            "Hours an Idempotency-Key's first answer is kept and replayed to retries; then the key is free"
            " again and its row is purged with the retention purge."
        ),
    )
    idempotency_wait_seconds: float = Field(
        default=2.0,
        gt=0,
        le=30,
        description=(
            "How long a request waits for one with the same Idempotency-Key still in progress (holding a"
            " pooled connection) before it answers 409 `request_in_progress` with Retry-After."
        ),
    )

    consumer_prefetch: int = Field(default=16, ge=1, le=1000)
    consumer_delivery_limit: int = Field(
        default=DEFAULT_DELIVERY_LIMIT,
        ge=1,
        le=1000,
        description=(
            "Quorum queues: deliveries of one message from the service queue before the broker moves it to the"
            " dead-letter queue (a consumer that dies on it every time); a second net behind the retries."
        ),
    )
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

    jwt_public_keys: str = Field(
        default=DEV_PUBLIC_KEYS,
        description=(
            "The JWK set (JSON) access tokens are verified with: public keys only, each with its `kid`."
            " During a key rotation it holds the old and the new key (docs/operations.md)."
        ),
    )
    jwt_issuer: str = "fastmicro-users"
    jwt_audience: str = "fastmicro"
    jwt_ttl_seconds: int = Field(
        default=900,
        ge=60,
        le=MAX_ACCESS_TOKEN_SECONDS,
        description="Lifetime of an access token: minutes, since one is only revoked by expiring (refresh tokens are).",
    )

    revocation_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description=(
            "How often an API process reloads the deleted users whose tokens it refuses (where the service"
            " learns of deletions): the longest a deleted user's token still reads after the event arrived."
        ),
    )

    api_docs: bool | None = Field(
        default=None,
        description="Serve /docs and /openapi.json. Unset: served, except with ENVIRONMENT=production.",
    )
    metrics_token: SecretStr | None = Field(
        default=None,
        description=(
            "The bearer token /metrics requires (Prometheus sends it). Unset: /metrics is open, which"
            " production refuses for the API: the cluster's scraper holds the token, nobody else."
        ),
    )
    worker_metrics_port: int | None = Field(
        default=None,
        ge=1,
        le=65535,
        description=(
            "Where a `worker` process serves GET /metrics (on HTTP_HOST, with METRICS_TOKEN like the API)."
            " Unset: HTTP_PORT + 1000."
        ),
    )

    def worker_metrics_port_or_default(self) -> int:
        return self.worker_metrics_port or self.http_port + 1000

    def docs_enabled(self) -> bool:
        return self.api_docs if self.api_docs is not None else self.environment != "production"

    @field_validator("jwt_public_keys")
    @classmethod
    def _public_keys_parse(cls, value: str) -> str:
        PublicKeySet.from_json(value)  # UnusableKey is a ValueError: reported as a settings error
        return value

    def public_keys(self) -> PublicKeySet:
        return PublicKeySet.from_json(self.jwt_public_keys)

    @model_validator(mode="after")
    def _inbox_outlives_the_retries(self) -> Self:
        if self.inbox_retention_days * 86_400 <= sum(self.consumer_retry_delays):
            raise ValueError("INBOX_RETENTION_DAYS must be longer than all the consumer retry delays together")
        return self

    @model_validator(mode="after")
    def _key_wait_within_statement_timeout(self) -> Self:
        timeout = self.db_statement_timeout_ms
        if timeout and self.idempotency_wait_seconds * 1000 >= timeout:
            raise ValueError("IDEMPOTENCY_WAIT_SECONDS must be shorter than DB_STATEMENT_TIMEOUT_MS")
        return self

    @model_validator(mode="after")
    def _refuse_dev_secrets_in_production(self) -> Self:
        if self.environment == "production":
            if any(is_example_key(key.kid, key.jwk.get("x")) for key in self.public_keys().keys.values()):
                raise ValueError(
                    f"JWT_PUBLIC_KEYS holds the development key (or a kid marked {EXAMPLE_SECRET_MARK}):"
                    " set the production key set"
                )
            token = self.metrics_token.get_secret_value() if self.metrics_token else None
            if token is not None and (len(token) < 32 or EXAMPLE_SECRET_MARK in token):
                raise ValueError("METRICS_TOKEN must be a private value of at least 32 characters in production")
            for name, url in (("DATABASE_URL", self.database_url), ("AMQP_URL", self.amqp_url)):
                parts = urlsplit(url)
                password = unquote(parts.password or "")
                if not password:
                    raise ValueError(f"{name} has no password: production connects as a user with one")
                if EXAMPLE_SECRET_MARK in password:
                    raise ValueError(f"{name} carries an example password ({EXAMPLE_SECRET_MARK}): set a private one")
                if unquote(parts.username or "") == "guest" and password == "guest":  # noqa: S105
                    raise ValueError(f"{name} uses the broker's default guest:guest account: create a user")
        return self


def is_example_key(kid: str, x: str | None) -> bool:
    """The development key (by its public part, whatever it is named) or a kid marked as an example."""
    return EXAMPLE_SECRET_MARK in kid or x == _DEV_PUBLIC_X
