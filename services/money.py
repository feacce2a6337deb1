"""USD amounts as integer cents and crypto amounts as Decimal: parsing, bounds and formatting."""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from enum import Enum

# Digits are ASCII only (re.ASCII); at most 9 integer digits keeps every value far inside SQLite's int64.
# The whole part is plain digits, or groups of three split by spaces (`10 000`, the Russian way) or by commas
# (`1,000`, the English way); with commas the decimals, if any, follow a point. `1.000` stays refused: it reads
# as one dollar in English and as a thousand in Russian, and we never guess.
_SPACES = " \u00a0\u202f\u2009"  # space, no-break space, narrow no-break space, thin space
_AMOUNT_RE = re.compile(
    r"\$?\s*(?:"
    rf"(?P<spaced>[0-9]{{1,3}}(?:[{_SPACES}][0-9]{{3}})+)(?:[.,](?P<spaced_frac>[0-9]+))?"
    r"|(?P<commas>[0-9]{1,3}(?:,[0-9]{3})+)(?:\.(?P<commas_frac>[0-9]+))?"
    r"|(?P<plain>[0-9]{1,9})(?:[.,](?P<plain_frac>[0-9]+))?"
    r")\s*(?:\$|usd)?", re.ASCII | re.IGNORECASE)


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


def parse_usd(text: str, *, thousands: bool = True) -> int:
    """Parse what a person types as a USD amount (`5`, `5.15`, `5,15`, `$5`, `1 000`, `1,000.50`) into cents.

    Refuses letters, signs, exponents, ambiguous separators and more than two decimals, so that
    what the user meant is never guessed. `thousands=False` refuses separators too (staff commands that move
    money take plain numbers only).
    """
    match = _AMOUNT_RE.fullmatch(text.strip())
    if match is None:
        raise AmountError(AmountProblem.FORMAT)
    if not thousands and match.group("plain") is None:
        raise AmountError(AmountProblem.FORMAT)
    for form in ("spaced", "commas", "plain"):
        if match.group(form) is not None:
            whole = re.sub(r"[^0-9]", "", match.group(form))
            fraction = match.group(f"{form}_frac")
            break
    if len(whole) > 9:
        raise AmountError(AmountProblem.FORMAT)
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


NBSP = "\u00a0"


def format_usd(cents: int, locale: str = "en", *, drop_zero_cents: bool = False) -> str:
    """`$1,234.50` in English, `1 234,50 $` in Russian (no-break spaces, so a line never splits a sum).

    Negative amounts keep their sign in front. `drop_zero_cents` gives `$5` for quick-amount buttons.
    """
    sign = "-" if cents < 0 else ""
    whole, frac = divmod(abs(cents), 100)
    cents_part = "" if drop_zero_cents and frac == 0 else f"{frac:02d}"
    if locale in RUSSIAN_STYLE:
        number = f"{whole:,}".replace(",", NBSP) + (f",{cents_part}" if cents_part else "")
        return f"{sign}{number}{NBSP}$"
    return f"{sign}${whole:,}" + (f".{cents_part}" if cents_part else "")


# Languages that write money as `10 000,00 $`.
RUSSIAN_STYLE = frozenset({"ru", "uk", "be", "kk"})


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

