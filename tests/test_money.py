"""Amount parsing: exactly the forms people type, nothing guessed."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.money import (
    AmountError,
    AmountLimits,
    AmountProblem,
    decimal_to_cents,
    format_crypto,
    format_usd,
    parse_decimal,
    parse_usd,
    parse_usd_within,
)

LIMITS = AmountLimits(min_cents=100, max_cents=1_000_000)


@pytest.mark.parametrize("text, cents", [
    ("5", 500), ("5.15", 515), ("5,15", 515), ("$5", 500), ("$ 5", 500), (" 7.5 ", 750), ("0005", 500),
    ("10000", 1_000_000), ("5$", 500), ("5 usd", 500), ("5 USD", 500),
    # Thousands separators where only one reading is possible: spaces (Russian), commas before a point (English).
    ("1 000", 100_000), ("10\u00a0000,50", 1_000_050), ("1,000", 100_000), ("1,000.50", 100_050),
    ("$2,500", 250_000), ("1 000 $", 100_000),
])
def test_accepts_what_people_type(text: str, cents: int) -> None:
    assert parse_usd(text) == cents


@pytest.mark.parametrize("text, problem", [
    ("abc", AmountProblem.FORMAT), ("", AmountProblem.FORMAT), ("-5", AmountProblem.FORMAT),
    ("+5", AmountProblem.FORMAT), ("1e3", AmountProblem.FORMAT), ("5 dollars", AmountProblem.FORMAT),
    ("5.", AmountProblem.FORMAT), (".5", AmountProblem.FORMAT), ("5.1.1", AmountProblem.FORMAT),
    ("١٢", AmountProblem.FORMAT), ("NaN", AmountProblem.FORMAT), ("Infinity", AmountProblem.FORMAT),
    ("1234567890", AmountProblem.FORMAT), ("1 00", AmountProblem.FORMAT), ("1,000,5", AmountProblem.FORMAT),
    ("1 000 000 000", AmountProblem.FORMAT), ("1,000,50", AmountProblem.FORMAT),
    ("5.123", AmountProblem.TOO_MANY_DECIMALS), ("1.000", AmountProblem.TOO_MANY_DECIMALS),
    ("0", AmountProblem.NOT_POSITIVE), ("0.00", AmountProblem.NOT_POSITIVE),
])
def test_refuses_everything_else(text: str, problem: AmountProblem) -> None:
    with pytest.raises(AmountError) as info:
        parse_usd(text)
    assert info.value.problem is problem


@pytest.mark.parametrize("text, problem", [("0.99", AmountProblem.BELOW_MIN), ("10000.01", AmountProblem.ABOVE_MAX)])
def test_limits(text: str, problem: AmountProblem) -> None:
    with pytest.raises(AmountError) as info:
        parse_usd_within(text, LIMITS)
    assert info.value.problem is problem
    assert parse_usd_within("1", LIMITS) == 100 and parse_usd_within("10000", LIMITS) == 1_000_000


@given(st.integers(min_value=1, max_value=999_999_999))
def test_formatted_cents_parse_back(cents: int) -> None:
    whole, frac = divmod(cents, 100)
    assert parse_usd(f"{whole}.{frac:02d}") == cents
    assert parse_usd(f"{whole},{frac:02d}") == cents


@given(st.text(max_size=30))
def test_any_text_either_parses_to_positive_cents_or_raises_amount_error(text: str) -> None:
    try:
        cents = parse_usd(text)
    except AmountError:
        return
    assert isinstance(cents, int) and 0 < cents < 10**11


def test_formatting() -> None:
    assert format_usd(123456) == "$1,234.56"
    assert format_usd(5) == "$0.05"
    assert format_usd(-250) == "-$2.50"
    assert format_usd(1_000_000, "ru") == "10\u00a0000,00\u00a0$"  # the Russian way, never split across lines
    assert format_usd(-250, "ru") == "-2,50\u00a0$"
    assert format_usd(2500, drop_zero_cents=True) == "$25" and format_usd(2550, drop_zero_cents=True) == "$25.50"
    assert format_usd(2500, "ru", drop_zero_cents=True) == "25\u00a0$"
    assert format_crypto(Decimal("4.990")) == "4.990"  # the gateway's digits, unchanged
    assert format_crypto(Decimal("1E-8")) == "0.00000001"


def test_gateway_decimals_are_strict() -> None:
    assert parse_decimal("5.00") == Decimal("5.00")
    assert parse_decimal(5) == Decimal(5)
    for bad in (5.0, True, None, "abc", "NaN", "-1", "Infinity", [], {}):
        assert parse_decimal(bad) is None
    assert decimal_to_cents(Decimal("4.999")) == 499  # never round a credit up
