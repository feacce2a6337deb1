"""USD amounts as integer cents and crypto amounts as Decimal: parsing, bounds and formatting."""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum

# Digits are ASCII only (re.ASCII); at most 9 integer digits keeps every value far inside SQLite's int64.
_AMOUNT_RE = re.compile(r"\$?\s*([0-9]{1,9})(?:[.,]([0-9]+))?\s*(?:\$|usd)?", re.ASCII | re.IGNORECASE)


class AmountProblem(str, Enum):
    """Why an amount was refused; each value is also the suffix of a translated message key."""

    FORMAT = "format"
    TOO_MANY_DECIMALS = "decimals"
    NOT_POSITIVE = "zero"
    BELOW_MIN = "below-min"
    ABOVE_MAX = "above-max"
    WHOLE_DOLLARS = "whole-dollars"  # payment pages take integers


class AmountError(ValueError):
    def __init__(self, problem: AmountProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


@dataclass(frozen=True)
class AmountLimits:
    min_cents: int
    max_cents: int


def parse_usd(text: str) -> int:
    """Parse what a person types as a USD amount (`5`, `5.15`, `5,15`, `$5`) into cents.

    Refuses letters, signs, exponents, thousands separators and more than two decimals, so that
    what the user meant is never guessed.
    """
    match = _AMOUNT_RE.fullmatch(text.strip())
    if match is None:
        raise AmountError(AmountProblem.FORMAT)
    whole, fraction = match.group(1), match.group(2)
    if fraction is not None and len(fraction) > 2:
        raise AmountError(AmountProblem.TOO_MANY_DECIMALS)
    cents = int(whole) * 100 + int((fraction or "").ljust(2, "0"))
    if cents <= 0:
        raise AmountError(AmountProblem.NOT_POSITIVE)
    return cents


def parse_usd_within(text: str, limits: AmountLimits) -> int:
    cents = parse_usd(text)
    check_limits(cents, limits)
    return cents


def check_limits(cents: int, limits: AmountLimits) -> None:
    if cents < limits.min_cents:
        raise AmountError(AmountProblem.BELOW_MIN)
    if cents > limits.max_cents:
        raise AmountError(AmountProblem.ABOVE_MAX)


def format_usd(cents: int) -> str:
    """`$1,234.50`; negative amounts keep their sign in front of the dollar sign."""
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    return f"{sign}${whole:,}.{frac:02d}"


def cents_to_decimal(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(Decimal("0.01"))


def decimal_to_cents(value: Decimal) -> int:
    """Whole cents, rounding down: we never credit a fraction of a cent that was not paid."""
    return int((value * 100).to_integral_value(rounding="ROUND_FLOOR"))


# No payment is anywhere near 10^12 of anything; larger values are nonsense (or an attack on our arithmetic).
MAX_DECIMAL = Decimal(10) ** 12


def parse_decimal(value: object) -> Decimal | None:
    """A gateway's decimal string (or int) as Decimal; None for anything else (floats, signs, absurd sizes)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    if len(text) > 64:
        return None
    try:
        result = Decimal(text)
    except InvalidOperation:
        return None
    if not result.is_finite() or result < 0 or result >= MAX_DECIMAL:
        return None
    return result


def format_crypto(value: Decimal) -> str:
    """Show a crypto amount exactly as the gateway gave it (its digits kept), never in exponent form."""
    return format(value, "f")

