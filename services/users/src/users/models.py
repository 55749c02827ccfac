"""The User entity and the rules that belong to it."""

from __future__ import annotations

import contextlib
import uuid

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from fastmicro.db import Base, Timestamps, UUIDPrimaryKey

UserId = uuid.UUID


def normalize_email(email: str) -> str:
    """The one spelling an address is stored and looked up by, at registration and login alike.

    As the email standards normalise it (Unicode NFC, an internationalised domain in Unicode, not
    punycode), then lower-cased: addresses are unique case-insensitively. A string that is no
    address at all is only trimmed and lower-cased; it matches no account.
    """
    with contextlib.suppress(EmailNotValidError):
        email = validate_email(email, check_deliverability=False).normalized
    return email.strip().lower()


class User(UUIDPrimaryKey, Timestamps, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))

    @classmethod
    def register(cls, *, email: str, name: str, password_hash: str) -> User:
        return cls(id=uuid.uuid4(), email=normalize_email(email), name=name, password_hash=password_hash)

    def change(self, *, name: str | None = None, password_hash: str | None = None) -> bool:
        """Apply the changes given; True when anything changed."""
        changed = False
        if name is not None and name != self.name:
            self.name = name
            changed = True
        if password_hash is not None:
            self.password_hash = password_hash
            changed = True
        return changed
