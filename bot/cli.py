"""`python -m bot coupons ...`: operator commands that need only the database (no bot token, no Telegram)."""
from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from services.coupons import CouponSpecError, CouponSpecProblem, add_coupon, parse_coupon_spec
from services.money import format_usd
from services.store import Coupon, CouponKind, Database
from services.store import coupons as coupon_repo
from services.store.db import path_from_url

USAGE = """usage:
  python -m bot coupons add CODE 10% [USES] [until YYYY-MM-DD] [min AMOUNT]
  python -m bot coupons add CODE 5 [USES] [until YYYY-MM-DD] [min AMOUNT]     (a fixed $5.00 bonus)
  python -m bot coupons list
  python -m bot coupons disable CODE | enable CODE
examples:
  python -m bot coupons add WELCOME10 10% 100 until 2026-12-31 min 10
  python -m bot coupons add BONUS5 5"""

SPEC_PROBLEMS = {
    CouponSpecProblem.USAGE: "expected a code, a bonus, then optionally USES, until DATE and min AMOUNT",
    CouponSpecProblem.CODE: "the code must be 2 to 32 letters, digits, - or _",
    CouponSpecProblem.VALUE: "the bonus must be a percentage from 1% to 100%, or a USD amount like 5 or 2.50",
    CouponSpecProblem.USES: "the number of uses must be a whole number above zero",
    CouponSpecProblem.DATE: "the date must be written YYYY-MM-DD",
    CouponSpecProblem.MIN_AMOUNT: "the minimum must be a USD amount like 10 or 12.50",
}


def run_coupons(args: list[str]) -> int:
    try:
        path = path_from_url(os.environ.get("DATABASE_URL", "sqlite:///data/bot.sqlite3").strip())
    except ValueError as exc:
        print(f"Configuration error: DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    if not args or args[0] not in ("add", "list", "disable", "enable"):
        print(USAGE, file=sys.stderr)
        return 2
    return asyncio.run(_coupons(path, args[0], args[1:]))


async def _coupons(path: Path, command: str, args: list[str]) -> int:
    db = Database(path)
    await db.connect()
    try:
        if command == "add":
            try:
                spec = parse_coupon_spec(" ".join(args))
            except CouponSpecError as exc:
                got = f" (got {exc.detail!r})" if exc.detail else ""
                print(f"Not added: {SPEC_PROBLEMS[exc.problem]}{got}\n{USAGE}", file=sys.stderr)
                return 2
            if await add_coupon(db, spec) is None:
                print(f"Not added: a coupon {spec.code} exists already", file=sys.stderr)
                return 1
            added = await coupon_repo.by_code(db.reader, spec.code)
            assert added is not None
            print(f"Added {describe(added)}")
            return 0
        if command == "list":
            for coupon in await coupon_repo.all_coupons(db.reader):
                print(describe(coupon))
            return 0
        if len(args) != 1:
            print(USAGE, file=sys.stderr)
            return 2
        async with db.transaction() as tx:
            changed = await coupon_repo.set_active(tx, args[0], command == "enable")
        if not changed:
            print(f"No coupon {args[0]}", file=sys.stderr)
            return 1
        print(f"{args[0]} {command}d")
        return 0
    finally:
        await db.close()


def describe(coupon: Coupon) -> str:
    bonus = f"{coupon.value}%" if coupon.kind is CouponKind.PERCENT else format_usd(coupon.value)
    parts = [coupon.code, f"bonus {bonus}", f"{coupon.used_count}/{coupon.max_uses or '∞'} used"]
    if coupon.min_amount_cents:
        parts.append(f"min {format_usd(coupon.min_amount_cents)}")
    if coupon.expires_at:
        parts.append(f"until {datetime.fromtimestamp(coupon.expires_at, tz=timezone.utc):%Y-%m-%d}")
    if not coupon.active:
        parts.append("disabled")
    return ", ".join(parts)
