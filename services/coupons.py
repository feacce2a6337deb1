"""Coupon checks: the bot's own codes first, then (when the gateway takes codes) a pass-through."""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from enum import Enum

from services.money import AmountError, parse_usd
from services.store import Coupon, CouponKind, Database, Deposit
from services.store import coupons as coupon_repo
from services.store.db import Conn

_CODE_RE = re.compile(r"[A-Za-z0-9_-]{2,32}", re.ASCII)


class CouponProblem(str, Enum):
    """Why a code was refused; the value is the suffix of its translated message key."""

    FORMAT = "format"
    NOT_FOUND = "not-found"
    EXPIRED = "expired"
    USED_UP = "used-up"
    ALREADY_USED = "already-used"
    BELOW_MIN = "below-min"
    REJECTED_BY_GATEWAY = "gateway-rejected"


class CouponError(Exception):
    def __init__(self, problem: CouponProblem, *, min_amount_cents: int | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.min_amount_cents = min_amount_cents


@dataclass(frozen=True)
class CouponChoice:
    """A code the user entered, as it will apply: our own coupon with its bonus, or the gateway's."""

    code: str
    coupon: Coupon | None  # None: passed through to the gateway, which decides its effect
    bonus_cents: int | None

    @property
    def is_gateway_code(self) -> bool:
        return self.coupon is None

    def to_state(self) -> dict[str, object]:
        return {"code": self.code, "coupon_id": self.coupon.id if self.coupon else None}


def normalize_code(text: str) -> str:
    code = text.strip()
    if not _CODE_RE.fullmatch(code):
        raise CouponError(CouponProblem.FORMAT)
    return code


async def choose_coupon(db: Database, *, code: str, user_id: int, amount_cents: int, now: int,
                        gateway_takes_codes: bool) -> CouponChoice:
    """Decide what a code means for this user and amount, or say precisely why it can't be used."""
    code = normalize_code(code)
    coupon = await coupon_repo.by_code(db.reader, code)
    if coupon is None or not coupon.active:
        if gateway_takes_codes and coupon is None:
            return CouponChoice(code=code, coupon=None, bonus_cents=None)
        raise CouponError(CouponProblem.NOT_FOUND)
    if coupon.expires_at is not None and coupon.expires_at <= now:
        raise CouponError(CouponProblem.EXPIRED)
    if coupon.max_uses is not None and coupon.used_count >= coupon.max_uses:
        raise CouponError(CouponProblem.USED_UP)
    if await coupon_repo.user_has_used(db.reader, coupon.id, user_id):
        raise CouponError(CouponProblem.ALREADY_USED)
    if amount_cents < coupon.min_amount_cents:
        raise CouponError(CouponProblem.BELOW_MIN, min_amount_cents=coupon.min_amount_cents)
    return CouponChoice(code=coupon.code, coupon=coupon, bonus_cents=coupon.bonus_for(amount_cents))


class CouponSpecProblem(str, Enum):
    USAGE = "usage"
    CODE = "code"
    VALUE = "value"
    USES = "uses"
    DATE = "date"
    MIN_AMOUNT = "min"


class CouponSpecError(ValueError):
    def __init__(self, problem: CouponSpecProblem, detail: str = "") -> None:
        super().__init__(f"{problem.value}: {detail}" if detail else problem.value)
        self.problem = problem
        self.detail = detail  # the word that was wrong, as typed


@dataclass(frozen=True)
class CouponSpec:
    """A coupon as an operator describes it: `CODE 10% [uses] [until YYYY-MM-DD] [min AMOUNT]`, or `CODE $5 ...`."""

    code: str
    kind: CouponKind
    value: int  # percent, or USD cents
    max_uses: int | None = None
    expires_at: int | None = None  # the end of the "until" day, UTC
    min_amount_cents: int = 0


def parse_coupon_spec(text: str) -> CouponSpec:
    """Parse an operator's coupon line; every mistake names the part that is wrong."""
    words = text.split()
    if len(words) < 2:
        raise CouponSpecError(CouponSpecProblem.USAGE)
    try:
        code = normalize_code(words[0])
    except CouponError:
        raise CouponSpecError(CouponSpecProblem.CODE, words[0]) from None
    kind, value = _coupon_value(words[1])
    max_uses: int | None = None
    expires_at: int | None = None
    min_cents = 0
    rest = words[2:]
    while rest:
        word = rest.pop(0).lower()
        if word == "until" and rest:
            expires_at = _end_of_day(rest.pop(0))
        elif word == "min" and rest:
            amount = rest.pop(0)
            try:
                min_cents = parse_usd(amount)
            except AmountError:
                raise CouponSpecError(CouponSpecProblem.MIN_AMOUNT, amount) from None
        elif word.isascii() and word.isdigit() and max_uses is None:
            max_uses = int(word)
            if not 0 < max_uses <= 10_000_000:
                raise CouponSpecError(CouponSpecProblem.USES, word)
        else:
            raise CouponSpecError(CouponSpecProblem.USAGE, word)
    return CouponSpec(code, kind, value, max_uses, expires_at, min_cents)


def _coupon_value(word: str) -> tuple[CouponKind, int]:
    if word.endswith("%"):
        number = word[:-1]
        if number.isascii() and number.isdigit() and 0 < int(number) <= 100:
            return CouponKind.PERCENT, int(number)
        raise CouponSpecError(CouponSpecProblem.VALUE, word)
    try:
        return CouponKind.FIXED, parse_usd(word)
    except AmountError:
        raise CouponSpecError(CouponSpecProblem.VALUE, word) from None


def _end_of_day(word: str) -> int:
    try:
        day = datetime.strptime(word, "%Y-%m-%d").replace(tzinfo=timezone.utc)
    except ValueError:
        raise CouponSpecError(CouponSpecProblem.DATE, word) from None
    return int((day + timedelta(days=1)).timestamp()) - 1


async def add_coupon(db: Database, spec: CouponSpec, *, created_by: int | None = None) -> int | None:
    """Create the coupon; None if a coupon with that code exists already."""
    async with db.transaction() as tx:
        return await coupon_repo.create(tx, code=spec.code, kind=spec.kind, value=spec.value, max_uses=spec.max_uses,
                                        min_amount_cents=spec.min_amount_cents, expires_at=spec.expires_at,
                                        created_by=created_by)


async def promised_bonus(conn: Conn, deposit: Deposit) -> int:
    """The bonus the confirmation promised for this deposit, if paid as asked: shown again on its card."""
    if deposit.coupon_id is None:
        return 0
    coupon = await coupon_repo.get(conn, deposit.coupon_id)
    return coupon.bonus_for(deposit.expected_credit_cents) if coupon is not None else 0
