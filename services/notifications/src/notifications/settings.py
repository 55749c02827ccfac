from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, SecretStr, model_validator

from fastmicro.settings import ServiceSettings

Delay = Annotated[float, Field(ge=0)]


class NotificationsSettings(ServiceSettings):
    service_name: str = "notifications"
    http_port: int = 8003
    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/notifications"

    smtp_host: str = "127.0.0.1"
    smtp_port: int = Field(default=1025, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout: float = Field(
        default=10.0, gt=0, description="Seconds for each SMTP connect and command, and for each whole send."
    )
    smtp_connections: int = Field(
        default=4,
        ge=1,
        le=64,
        description=(
            "SMTP connections a sender sends over at once. A sender that dies or loses its database can "
            "send this many mails twice (those in flight), never more."
        ),
    )
    mail_from: str = "fastmicro <no-reply@fastmicro.local>"

    #: Seconds before each retry of a failed send: len(send_retry_delays) + 1 attempts in all.
    send_retry_delays: list[Delay] = Field(default=[5.0, 30.0, 120.0, 600.0, 1800.0])
    sender_batch_size: int = Field(default=50, ge=1, le=1000)
    sender_poll_interval: float = Field(default=5.0, gt=0, description="Fallback poll when no NOTIFY arrives.")
    sender_max_backoff: float = Field(
        default=30.0, gt=0, description="Longest pause of the sender while the mail server or database is down."
    )
    sender_lease_seconds: float | None = Field(
        default=None,
        gt=0,
        description=(
            "How long a claimed notification stays the sender's alone: other replicas skip it until then, "
            "and a sender that dies holds its unsent rows this long at most. The sender renews the lease "
            "while a batch lasts, so it only has to outlast one send (SMTP_TIMEOUT) and the write of its "
            "outcome. Longer than SMTP_TIMEOUT; by default twice SMTP_TIMEOUT."
        ),
    )

    @property
    def sender_lease(self) -> float:
        """The lease in force: SENDER_LEASE_SECONDS, or twice the SMTP timeout (a send, and as long to record it)."""
        return self.sender_lease_seconds if self.sender_lease_seconds is not None else 2 * self.smtp_timeout

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> Self:
        # The sender starts a send only while a whole one (bounded by the SMTP timeout) fits in its lease.
        if self.sender_lease <= self.smtp_timeout:
            raise ValueError(
                f"SENDER_LEASE_SECONDS ({self.sender_lease}) must be longer than SMTP_TIMEOUT "
                f"({self.smtp_timeout}): the sender only starts a send that can end before its lease does"
            )
        return self
