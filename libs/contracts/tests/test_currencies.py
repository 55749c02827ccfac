"""The one currency table: what orders accepts is what notifications knows the decimals of."""

from __future__ import annotations

import pytest

from fastmicro_contracts.currencies import ACTIVE_CURRENCIES, MINOR_UNITS, minor_unit_digits


def test_every_code_is_three_capitals_with_a_known_number_of_decimals() -> None:
    assert all(len(code) == 3 and code.isalpha() and code.isupper() for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3}
    assert frozenset(MINOR_UNITS) == ACTIVE_CURRENCIES


@pytest.mark.parametrize("code", ["CLF", "UYI", "UYW", "XAU", "XDR", "XTS", "XXX", "HRK", "SLL"])
def test_funds_metals_units_tests_and_withdrawn_codes_are_not_currencies_here(code: str) -> None:
    assert code not in ACTIVE_CURRENCIES


@pytest.mark.parametrize(("code", "digits"), [("USD", 2), ("eur", 2), ("JPY", 0), ("XOF", 0), ("KWD", 3)])
def test_minor_units(code: str, digits: int) -> None:
    assert minor_unit_digits(code) == digits
