"""Login throttling: failed logins counted per account and per client address, in a sliding window.

Three counts, each with its limit: the account from this address (low: one attacker cannot try
much, and cannot lock the owner out from elsewhere), the account from anywhere (high: a
distributed attack still meets a ceiling), and the address across accounts (credential stuffing).
The counts live in the users database, so every replica sees the same ones. Keys are hashed: the
table holds neither emails nor addresses. A check that finds a limit reached answers 429 before
the password is even looked at (no argon2 work for an attacker), and attempts refused that way do
not count, so a blocked key frees itself once its oldest counted failure leaves the window.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import BigInteger, DateTime, Identity, Index, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro.db import Base
from fastmicro.errors import AppError


class TooManyAttempts(AppError):
    status = 429
    code = "too_many_attempts"
    detail = "Too many failed logins; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__()
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LoginFailure(Base):
    __tablename__ = "login_failures"
    __table_args__ = (Index("ix_login_failures_key_failed_at", "key", "failed_at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    key: Mapped[bytes] = mapped_column(LargeBinary(32))
    failed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


def _key(*parts: str) -> bytes:
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).digest()


@dataclass(frozen=True, slots=True)
class ThrottlePolicy:
    """At most so many failures per `window`: for an account from one address, for it from all, per address."""

    per_account_and_address: int
    per_account: int
    per_address: int
    window: timedelta

    def keys(self, normalized_email: str, address: str | None) -> ThrottleKeys:
        if address is None:  # no peer address (not over TCP): only the account's own count applies
            return ThrottleKeys([_key("account", normalized_email)], [self.per_account])
        return ThrottleKeys(
            [_key("account", normalized_email), _key("pair", normalized_email, address), _key("address", address)],
            [self.per_account, self.per_account_and_address, self.per_address],
        )

    def retry_after(self, blocked_until: datetime | None, now: datetime) -> int | None:
        """Whole seconds until a key blocked until `blocked_until` is free; None when it is free now."""
        if blocked_until is None or blocked_until <= now:
            return None
        return max(1, math.ceil((blocked_until - now).total_seconds()))


@dataclass(frozen=True, slots=True)
class ThrottleKeys:
    """The hashed keys one attempt counts against, with their limits; the first keys name the account."""

    keys: list[bytes]
    limits: list[int]

    @property
    def of_the_account(self) -> list[bytes]:
        """Cleared by a successful login: the owner proved the password (the address count stays)."""
        return self.keys[:2]
