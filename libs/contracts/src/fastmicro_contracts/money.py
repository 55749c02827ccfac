"""An amount of money as events carry it: a decimal string and its currency, `{"amount": "28.99", "currency": "EUR"}`.

The amount is written in the currency's major unit with as many decimals as its minor unit has
(`currencies.minor_unit_digits`: "28.99" EUR, "2749" JPY, "1.234" KWD), so a reader needs no
table to show it and none to know what `2899` meant. It is a string, never a JSON number: a
reader's float would round it.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints, model_validator

from fastmicro_contracts.currencies import minor_unit_digits

Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
#: Digits, at most three decimals (the most any currency's minor unit has), no sign, no exponent.
Amount = Annotated[str, StringConstraints(pattern=r"^(0|[1-9][0-9]{0,16})(\.[0-9]{1,3})?$")]


class Money(BaseModel):
    """An amount of a currency; the amount a decimal string with the decimals of the currency's minor unit."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    amount: Amount
    currency: Currency

    @classmethod
    def of_minor_units(cls, minor_units: int, currency: str) -> Money:
        """`2899, "EUR"` -> `28.99 EUR`: written with the currency's own number of decimals."""
        digits = minor_unit_digits(currency)
        return cls(amount=f"{Decimal(minor_units).scaleb(-digits):.{digits}f}", currency=currency)

    @property
    def minor_units(self) -> int:
        """The amount in the currency's minor unit: `28.99 EUR` -> 2899."""
        return int(Decimal(self.amount).scaleb(minor_unit_digits(self.currency)))

    @model_validator(mode="after")
    def _whole_minor_units(self) -> Money:
        # A fraction of a cent is nothing a producer writes, and no reader could show or add it.
        if Decimal(self.amount).scaleb(minor_unit_digits(self.currency)) % 1:
            raise ValueError(f"amount has more decimals than a {self.currency} minor unit")
        return self
