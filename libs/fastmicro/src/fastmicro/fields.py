"""Field types for requests: text that PostgreSQL can store and UTF-8 can encode, offsets it can take.

PostgreSQL refuses U+0000 in text, and a lone surrogate cannot be encoded; either would
otherwise pass validation and fail later as a 500. Free text is `Annotated[str, Text(max_length=...)]`,
a secret `SecretText`; any other text input is checked with `storable`. Every offset is bounded
by `MAX_OFFSET`. What they accept is what their JSON Schema says (a client, or a fuzzer, can
trust the OpenAPI document), and no more.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import AfterValidator, Field, GetCoreSchemaHandler, SecretStr
from pydantic_core import CoreSchema, core_schema


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

#: Text without U+0000, as a JSON Schema pattern (lone surrogates cannot be written in valid UTF-8 JSON).
NO_NUL_PATTERN = r"^[^\x00]*$"

#: A secret (a password) held to the same rule as free text.
SecretText = Annotated[
    SecretStr, AfterValidator(_storable_secret), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})
]

#: Unicode's White_Space characters, as a regular expression class's contents: what `Text` trims.
_WHITESPACE = r"\x09-\x0d\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_WHITESPACE_CHARS = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + ("\u2028\u2029\u202f\u205f\u3000")
)
#: Something besides whitespace, and no U+0000: what `Text` accepts, as a JSON Schema pattern.
TEXT_PATTERN = rf"^[^\x00]*[^\x00{_WHITESPACE}][^\x00]*$"


@dataclass(frozen=True, slots=True)
class Text:
    """Free text, stored without its surrounding whitespace: `Annotated[str, Text(max_length=100)]`.

    The checks run on the text as sent (at most `max_length` characters, not only whitespace, no
    U+0000, valid Unicode), so that the JSON Schema (`maxLength`, `pattern`) says exactly what is
    accepted; the stored value is then trimmed.
    """

    max_length: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        checked = core_schema.str_schema(min_length=1, max_length=self.max_length, pattern=TEXT_PATTERN)
        return core_schema.no_info_after_validator_function(_trimmed, checked)


def _trimmed(value: str) -> str:
    return storable(value).strip(_WHITESPACE_CHARS)


@dataclass(frozen=True, slots=True)
class WholeNumber:
    """An integer from `ge` to `le` as JSON Schema defines one: `Annotated[int, WholeNumber(ge=1, le=100)]`.

    A number without a fractional part, so 5 and 5.0 (the same JSON number) are 5; never 5.5, "5"
    or true, which lax parsing would read as 5 and 1.
    """

    ge: int
    le: int

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        strict = core_schema.int_schema(strict=True, ge=self.ge, le=self.le)
        return core_schema.no_info_before_validator_function(_whole, strict)


def _whole(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value
