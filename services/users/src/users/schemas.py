"""HTTP request and response bodies of the users API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, StringConstraints, model_validator

from fastmicro.fields import SecretText, storable
from fastmicro_contracts.users import NAME_MAX_LENGTH

# UserCreated's limit: what is accepted here is what every consumer accepts.
Name = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=NAME_MAX_LENGTH), AfterValidator(storable)
]
Password = Annotated[SecretText, Field(min_length=8, max_length=128)]


class UserCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: EmailStr
    password: Password
    name: Name


class UserUpdate(BaseModel):
    """Only the fields present change. `null` is refused rather than read as "no change"."""

    model_config = ConfigDict(extra="forbid")

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
