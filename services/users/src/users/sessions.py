"""Sessions: the refresh tokens a login starts, their rotation, and the rules of reuse and expiry.

A refresh token is opaque (256 random bits) and only its SHA-256 is stored: a copy of the table
cannot be used to refresh. Each use retires the token and issues its successor in the same
family; a retired token presented again means two parties hold it (one of them stole it), so
the whole family is revoked (RFC 9700, 4.14.2).
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from datetime import datetime, timedelta
from enum import Enum

from sqlalchemy import DateTime, ForeignKey, LargeBinary
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro.db import Base

_TOKEN_BYTES = 32


def token_digest(token: str) -> bytes:
    """What is stored and looked up: a fast hash is enough for 256 random bits (no dictionary to try)."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()


class TokenState(Enum):
    ACTIVE = "active"
    RETIRED = "retired"  # used or revoked: presenting it again is reuse
    EXPIRED = "expired"


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column(index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    @classmethod
    def start(cls, user_id: uuid.UUID, *, now: datetime, ttl: timedelta) -> tuple[RefreshToken, str]:
        """The first token of a new session, and its plain value (shown to the client once)."""
        return cls._issue(user_id, uuid.uuid4(), now=now, ttl=ttl)

    def state(self, now: datetime) -> TokenState:
        if self.retired_at is not None:
            return TokenState.RETIRED
        return TokenState.EXPIRED if self.expires_at <= now else TokenState.ACTIVE

    def rotate(self, *, now: datetime, ttl: timedelta) -> tuple[RefreshToken, str]:
        """Retire this token for its successor in the same family."""
        if self.state(now) is not TokenState.ACTIVE:
            raise ValueError("only an active refresh token can be rotated")
        self.retired_at = now
        return self._issue(self.user_id, self.family_id, now=now, ttl=ttl)

    @classmethod
    def _issue(
        cls, user_id: uuid.UUID, family_id: uuid.UUID, *, now: datetime, ttl: timedelta
    ) -> tuple[RefreshToken, str]:
        token = secrets.token_urlsafe(_TOKEN_BYTES)
        row = cls(
            id=uuid.uuid4(),
            family_id=family_id,
            user_id=user_id,
            token_hash=token_digest(token),
            created_at=now,
            expires_at=now + ttl,
            retired_at=None,
        )
        return row, token
