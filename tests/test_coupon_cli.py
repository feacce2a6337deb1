"""Operators create coupons with `python -m bot coupons ...`; the bot honours them in the conversation."""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.coupons import CouponSpecError, CouponSpecProblem, parse_coupon_spec
from services.store import CouponKind
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

ROOT = Path(__file__).resolve().parent.parent


def test_full_spec() -> None:
    spec = parse_coupon_spec("WELCOME10 10% 100 until 2026-12-31 min 12.50")
    assert (spec.code, spec.kind, spec.value, spec.max_uses, spec.min_amount_cents) == (
        "WELCOME10", CouponKind.PERCENT, 10, 100, 1250)
    assert datetime.fromtimestamp(spec.expires_at, tz=timezone.utc).isoformat() == "2026-12-31T23:59:59+00:00"


def test_fixed_bonus_and_any_order_of_options() -> None:
    spec = parse_coupon_spec("BONUS5 $5 min 20 until 2027-01-01")
    assert (spec.kind, spec.value, spec.max_uses, spec.min_amount_cents) == (CouponKind.FIXED, 500, None, 2000)


@pytest.mark.parametrize("text, problem", [
    ("", CouponSpecProblem.USAGE), ("ONLYCODE", CouponSpecProblem.USAGE), ("A 10%", CouponSpecProblem.CODE),
    ("GOOD 0%", CouponSpecProblem.VALUE), ("GOOD 101%", CouponSpecProblem.VALUE), ("GOOD ten", CouponSpecProblem.VALUE),
    ("GOOD -5", CouponSpecProblem.VALUE), ("GOOD 5 0", CouponSpecProblem.USES),
    ("GOOD 5 until 31.12.2026", CouponSpecProblem.DATE), ("GOOD 5 min abc", CouponSpecProblem.MIN_AMOUNT),
    ("GOOD 5 until", CouponSpecProblem.USAGE), ("GOOD 5 7 8", CouponSpecProblem.USAGE),
    ("GOOD 5 forever", CouponSpecProblem.USAGE),
])
def test_each_mistake_is_named(text: str, problem: CouponSpecProblem) -> None:
    with pytest.raises(CouponSpecError) as info:
        parse_coupon_spec(text)
    assert info.value.problem is problem


@given(st.text(max_size=60))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        spec = parse_coupon_spec(text)
    except CouponSpecError:
        return
    assert spec.value > 0 and (spec.kind is CouponKind.FIXED or spec.value <= 100)


def _cli(cwd: Path, db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": db_url, "PYTHONPATH": str(ROOT)}
    env.pop("BOT_TOKEN", None)  # coupons need only the database
    return subprocess.run([sys.executable, "-m", "bot", "coupons", *args], env=env, capture_output=True, text=True,
                          timeout=60, cwd=cwd)


async def test_a_coupon_added_from_the_command_line_works_in_the_bot(api: FakeBotAPI, tmp_path: Path,
                                                                    database_url: str) -> None:
    url = database_url
    added = _cli(tmp_path, url, "add", "SPRING20", "20%", "1", "min", "10")
    assert added.returncode == 0, added.stderr
    assert "SPRING20, bonus 20%, 0/1 used, min $10.00" in added.stdout
    assert _cli(tmp_path, url, "add", "SPRING20", "5").returncode == 1  # codes are unique
    refused = _cli(tmp_path, url, "add", "BAD", "150%")
    assert refused.returncode == 2 and "percentage from 1% to 100%" in refused.stderr

    harness = await Harness.start(api, database_url)
    user = 777
    try:
        await harness.send(user, "/topup")
        await harness.tap(user, "BTC")
        await harness.send(user, "50")
        await harness.send(user, "spring20")
        assert "+$10.00" in harness.last_text(user)
        await harness.tap(user, "Create")
        await harness.tap(user, "Simulate payment")
        await harness.deliver()
        assert any("New balance: $60.00" in text for text in harness.texts(user))
    finally:
        await harness.close()
    listed = _cli(tmp_path, url, "list")
    assert "SPRING20, bonus 20%, 1/1 used" in listed.stdout
    assert _cli(tmp_path, url, "disable", "SPRING20").returncode == 0
    assert "disabled" in _cli(tmp_path, url, "list").stdout
    assert _cli(tmp_path, url, "disable", "NOPE").returncode == 1
