"""Coupon checks: the bot's own codes first, then (when the gateway takes codes) a pass-through."""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from services.store import Coupon, Database
from services.store import coupons as coupon_repo

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
