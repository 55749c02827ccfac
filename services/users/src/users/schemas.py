"""HTTP request and response bodies of the users API."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from email_validator import SPECIAL_USE_DOMAIN_NAMES
from pydantic import BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from fastmicro.fields import SecretText, Text
from fastmicro_contracts.users import NAME_MAX_LENGTH


def _any_case(name: str) -> str:
    return "".join(f"[{char}{char.upper()}]" if char.isalpha() else re.escape(char) for char in name)


# An address mail can reach: email-validator refuses special-use domains (.test, .local, ...), and
# the document says so (as a pattern beside `format: email`), so that it promises no more.
_NOT_SPECIAL_USE = "|".join(map(_any_case, SPECIAL_USE_DOMAIN_NAMES))
Email = Annotated[EmailStr, Field(json_schema_extra={"pattern": rf"^(?!.*[@.](?:{_NOT_SPECIAL_USE})$)"})]
# UserCreated's limit: what is accepted here is what every consumer accepts.
Name = Annotated[str, Text(max_length=NAME_MAX_LENGTH)]
Password = Annotated[SecretText, Field(min_length=8, max_length=128)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: Email
    password: Password
    name: Name


def _update_schema(schema: dict[str, Any]) -> None:
    """Document what the validators below refuse: each field without the `null` its type admits
    (`_no_nulls`) or a default, and `password` only beside `current_password`."""
    for name, field in schema["properties"].items():
        (value,) = (option for option in field.pop("anyOf", [field]) if option != {"type": "null"})
        field.pop("default", None)
        schema["properties"][name] = {**value, **field}
    schema["dependentRequired"] = {"password": ["current_password"]}


class UserUpdate(BaseModel):
    """Only the fields present change. `null` is refused rather than read as "no change".

    A new `password` needs `current_password` beside it: a stolen access token alone cannot
    take the account over.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_update_schema)

    name: Name | None = None
    password: Password | None = None
    current_password: Annotated[SecretText, Field(max_length=128)] | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [key for key in ("name", "password", "current_password") if key in data and data[key] is None]
            if nulls:
                raise ValueError(f"{', '.join(nulls)} may be omitted but not null")
        return data

    @model_validator(mode="after")
    def _current_password_with_a_new_one(self) -> UserUpdate:
        if self.password is not None and self.current_password is None:
            raise ValueError("current_password is required to change the password")
        return self

    def current_password_value(self) -> str:
        return "" if self.current_password is None else self.current_password.get_secret_value()


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
    expires_in: int = Field(description="Seconds the access token is valid for.")
    refresh_token: str = Field(description="Single use: /auth/refresh answers its successor.")


class RefreshIn(BaseModel):
    """The refresh token, as a form field (OAuth2 style) or a JSON member."""

    model_config = ConfigDict(extra="forbid")

    refresh_token: Annotated[str, StringConstraints(min_length=1, max_length=256)]
