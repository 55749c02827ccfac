"""Field types for requests: text that PostgreSQL can store and UTF-8 can encode, offsets it can take.

PostgreSQL refuses U+0000 in text, and a lone surrogate cannot be encoded; either would
otherwise pass validation and fail later as a 500. Check every free-text input with `storable`,
after its other constraints (`Annotated[str, StringConstraints(...), AfterValidator(storable)]`),
and bound every offset by `MAX_OFFSET`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, SecretStr


def storable(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


def _storable_secret(value: SecretStr) -> SecretStr:
    storable(value.get_secret_value())
    return value


def is_storable(value: str) -> bool:
    try:
        storable(value)
    except ValueError:
        return False
    return True


#: PostgreSQL's OFFSET is a bigint: beyond it is bad input (422), not a fault.
MAX_OFFSET = 2**63 - 1

#: A secret (a password) held to the same rule as free text.
SecretText = Annotated[SecretStr, AfterValidator(_storable_secret)]
