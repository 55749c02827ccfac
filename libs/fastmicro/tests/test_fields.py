"""The request field types accept exactly what their JSON Schema says, so the OpenAPI document can be trusted."""

from __future__ import annotations

import re
from typing import Annotated, Any

import pytest
from pydantic import BaseModel, Field, ValidationError

from fastmicro.fields import NO_NUL_PATTERN, SecretText, Text, WholeNumber


class Thing(BaseModel):
    name: Annotated[str, Text(max_length=5)] = "thing"
    count: Annotated[int, WholeNumber(ge=1, le=10)] = 1
    secret: SecretText | None = None


NAME = Thing.model_json_schema()["properties"]["name"]


def accepts(**fields: Any) -> bool:
    try:
        Thing.model_validate(fields)
    except ValidationError:
        return False
    return True


def documented_name(value: str) -> bool:
    """Valid by the JSON Schema, as a client (or a fuzzer) reads it."""
    return NAME["minLength"] <= len(value) <= NAME["maxLength"] and re.search(NAME["pattern"], value) is not None


NAMES = [
    "Ada",
    " Ada ",
    "\u3000Ada\u2003",
    "a\tb",
    "\x1c",  # a separator, not White_Space: text like any other
    "",
    " ",
    "\n\t\r ",
    "\u00a0\u2028\u3000",
    "Ada\x00",
    "abcde",
    "abcdef",
    " abcd ",  # six as sent: the limit holds for what was sent, not for what is kept
]


@pytest.mark.parametrize("value", NAMES)
def test_text_accepts_what_its_schema_documents(value: str) -> None:
    assert accepts(name=value) == documented_name(value)


@pytest.mark.parametrize(("value", "kept"), [(" Ada ", "Ada"), ("\u3000Ada\u2003", "Ada"), ("a\tb", "a\tb")])
def test_text_is_kept_without_its_surrounding_whitespace(value: str, kept: str) -> None:
    assert Thing.model_validate({"name": value}).name == kept


def test_text_refuses_a_lone_surrogate() -> None:
    assert not accepts(name="A\ud800")


@pytest.mark.parametrize(("value", "count"), [(5, 5), (5.0, 5), (10.0, 10)])
def test_a_whole_number_is_an_integer_as_json_schema_says(value: float, count: int) -> None:
    thing = Thing.model_validate_json(f'{{"count": {value}}}')

    assert thing.count == count
    assert type(thing.count) is int


@pytest.mark.parametrize("value", ["5.5", '"5"', "true", "0", "11", "1e300", "NaN", "null"])
def test_a_whole_number_refuses_fractions_strings_booleans_and_the_out_of_range(value: str) -> None:
    with pytest.raises(ValidationError):
        Thing.model_validate_json(f'{{"count": {value}}}')


def test_the_schema_documents_the_bounds() -> None:
    schema = Thing.model_json_schema()["properties"]

    assert schema["count"] == {"type": "integer", "minimum": 1, "maximum": 10, "title": "Count", "default": 1}
    assert schema["secret"]["anyOf"][0]["pattern"] == NO_NUL_PATTERN


def test_a_secret_refuses_nul_as_its_pattern_documents() -> None:
    assert accepts(secret="hunter2")
    assert not accepts(secret="hunter\x002")
    assert re.search(NO_NUL_PATTERN, "hunter\x002") is None


def test_bounds_compose_with_other_field_metadata() -> None:
    class Priced(BaseModel):
        price: Annotated[int, WholeNumber(ge=0, le=9), Field(description="Cents")]

    assert Priced.model_json_schema()["properties"]["price"]["description"] == "Cents"
    assert Priced.model_validate({"price": 9.0}).price == 9
