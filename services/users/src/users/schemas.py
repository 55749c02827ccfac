"""HTTP request and response bodies of the users API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator

from fastmicro.fields import SecretText, Text


def _any_case(name: str) -> str:
    return "".join(f"[{char}{char.upper()}]" if char.isalpha() else re.escape(char) for char in name)


# An address mail can reach: email-validator refuses special-use domains (.test, .local, ...), and
# the document says so (as a pattern beside `format: email`), so that it promises no more.
_NOT_SPECIAL_USE = "|".join(map(_any_case, SPECIAL_USE_DOMAIN_NAMES))
Email = Annotated[EmailStr, Field(json_schema_extra={"pattern": rf"^(?!.*[@.](?:{_NOT_SPECIAL_USE})$)"})]
Name = Annotated[str, Text(max_length=100)]
Password = Annotated[SecretText, Field(min_length=8, max_length=128)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password
    name: Name


def _not_nullable(schema: dict[str, Any]) -> None:
    """Document each field without the `null` its type admits (`_no_nulls` refuses it) and no default."""
    for name, field in schema["properties"].items():
        (value,) = (option for option in field.pop("anyOf", [field]) if option != {"type": "null"})
        field.pop("default", None)
        schema["properties"][name] = {**value, **field}


class UserUpdate(BaseModel):
    """Only the fields present change. `null` is refused rather than read as "no change"."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_not_nullable)

    name: Name | None = None
    password: Password | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [key for key in ("name", "password") if key in data and data[key] is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)} may be omitted but not null")
        return data


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: UUID
    email: str
    name: str
    created_at: datetime
    updated_at: datetime


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_in: int
