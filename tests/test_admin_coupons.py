"""/coupon_add, /coupons and /coupon_off in the admin chat: every mistake named, every change audited."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.coupons import CouponError, CouponProblem
from services.store import CouponKind, now_ts
from services.store import coupons as coupon_repo
from services.store.db import fetch_all, fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID, Harness

ADMIN, OTHER_ADMIN, USER, OTHER_USER = 501, 502, 555, 556
CHAT = ADMIN_CHAT_ID


@pytest.fixture
async def h(api: FakeBotAPI, database_url: str):
    api.chat_admins[ADMIN_CHAT_ID] = [ADMIN, OTHER_ADMIN]
    harness = await Harness.start(api, database_url)
    await harness.send(USER, "/start")
    yield harness
    await harness.close()


async def admin_says(h: Harness, text: str, admin: int = ADMIN) -> str:
    await h.send(admin, text, chat_id=CHAT, username="boss")
    return h.last_text(CHAT)


async def count(h: Harness, sql: str) -> int:
    return int(await fetch_value(h.app.db.reader, sql, ()))


async def audit_rows(h: Harness) -> list[tuple]:
    rows = await fetch_all(h.app.db.reader, "SELECT * FROM admin_actions ORDER BY id", ())
    return [(r["actor_id"], r["actor_name"], r["action"], r["target"]) for r in rows]


async def pay_with_coupon(h: Harness, user_id: int, code: str, cents: int = 2500) -> int:
    await h.send(user_id, "/start")
    deposit = await h.app.topup.create_deposit(user_id=user_id, chat_id=user_id, coin="USDT", network="TRON",
                                               amount_cents=cents, coupon_code=code)
    await h.app.topup.simulate_payment(user_id, deposit.id)
    return deposit.id


# --- /coupon_add ---

async def test_add_a_percent_coupon_with_every_option(h: Harness) -> None:
    reply = await admin_says(h, "/coupon_add SPRING10 10% 100 until 2099-12-31 min 12.50")
    assert reply == "✅ Coupon added: SPRING10 · bonus 10% · 0/100 used · min $12.50 · until 2099-12-31"
    coupon = await coupon_repo.by_code(h.app.db.reader, "SPRING10")
    assert coupon is not None
    assert (coupon.kind, coupon.value, coupon.max_uses, coupon.min_amount_cents, coupon.active) == (
        CouponKind.PERCENT, 10, 100, 1250, True)
    assert datetime.fromtimestamp(coupon.expires_at, tz=timezone.utc).isoformat() == "2099-12-31T23:59:59+00:00"
    assert await count(h, "SELECT created_by FROM coupons") == ADMIN
    assert await audit_rows(h) == [(ADMIN, "@boss", "coupon_add", "coupon:SPRING10")]
    details = await fetch_value(h.app.db.reader, "SELECT details FROM admin_actions", ())
    assert '"bonus": "10%"' in details and '"until": "2099-12-31"' in details and '"max_uses": 100' in details


async def test_add_a_fixed_bonus(h: Harness) -> None:
    assert await admin_says(h, "/coupon_add BONUS5 5") == "✅ Coupon added: BONUS5 · bonus $5.00 · 0/∞ used"
    coupon = await coupon_repo.by_code(h.app.db.reader, "BONUS5")
    assert coupon is not None and (coupon.kind, coupon.value, coupon.max_uses) == (CouponKind.FIXED, 500, None)


async def test_options_in_any_order(h: Harness) -> None:
    reply = await admin_says(h, "/coupon_add MIX $2.50 min 20 until 2099-01-01 3")
    assert reply == "✅ Coupon added: MIX · bonus $2.50 · 0/3 used · min $20.00 · until 2099-01-01"


async def test_a_duplicate_code_is_refused_whatever_its_case(h: Harness) -> None:
    await admin_says(h, "/coupon_add SPRING10 10%")
    for text in ("/coupon_add SPRING10 20%", "/coupon_add spring10 5"):
        assert "A coupon" in await admin_says(h, text) and "exists already" in h.last_text(CHAT)
    coupon = await coupon_repo.by_code(h.app.db.reader, "SPRING10")
    assert coupon is not None and coupon.value == 10
    assert await count(h, "SELECT COUNT(*) FROM coupons") == 1
    assert len(await audit_rows(h)) == 1


@pytest.mark.parametrize(("text", "complaint"), [
    ("/coupon_add", "Give at least a code and a bonus"),
    ("/coupon_add ONLYCODE", "Give at least a code and a bonus"),
    ("/coupon_add A 10%", "“A” can't be a code"),
    ("/coupon_add BAD!CODE 10%", "“BAD!CODE” can't be a code"),
    ("/coupon_add GOOD 0%", "“0%” is not a bonus"),
    ("/coupon_add GOOD 101%", "“101%” is not a bonus"),
    ("/coupon_add GOOD ten", "“ten” is not a bonus"),
    ("/coupon_add GOOD -5", "“-5” is not a bonus"),
    ("/coupon_add GOOD 5.123", "“5.123” is not a bonus"),
    ("/coupon_add GOOD 10% 0", "“0” is not a number of uses"),
    ("/coupon_add GOOD 10% 99999999", "“99999999” is not a number of uses"),
    ("/coupon_add GOOD 10% until 31.12.2099", "“31.12.2099” is not a date"),
    ("/coupon_add GOOD 10% until 2099-02-30", "“2099-02-30” is not a date"),
    ("/coupon_add GOOD 10% min abc", "“abc” is not a minimum amount"),
    ("/coupon_add GOOD 10% until", "“until” needs a value"),
    ("/coupon_add GOOD 10% min", "“min” needs a value"),
    ("/coupon_add GOOD 10% 7 8", "I don't understand “8”"),
    ("/coupon_add GOOD 10% forever", "I don't understand “forever”"),
    ("/coupon_add GOOD <b>", "“<b>” is not a bonus"),
    ("/coupon_add GOOD 10% until 2020-01-01", "2020-01-01 has already passed"),
])
async def test_each_mistake_is_named_with_usage_and_nothing_is_added(h: Harness, text: str, complaint: str) -> None:
    reply = await admin_says(h, text)
    assert complaint in reply
    assert "Usage: /coupon_add" in reply and "Examples: /coupon_add SPRING10" in reply
    assert await count(h, "SELECT COUNT(*) FROM coupons") == 0
    assert await audit_rows(h) == []


# --- /coupons ---

async def test_the_list_shows_use_limits_and_state(h: Harness) -> None:
    assert await admin_says(h, "/coupons") == "🎟 No bot coupons yet. Add one with /coupon_add."
    await admin_says(h, "/coupon_add SPRING10 10% 100 min 10")
    await admin_says(h, "/coupon_add BONUS5 5")
    async with h.app.db.transaction() as tx:
        await coupon_repo.create(tx, code="OLD", kind=CouponKind.PERCENT, value=5, expires_at=now_ts() - 86_400)
    await pay_with_coupon(h, USER, "SPRING10")
    await pay_with_coupon(h, OTHER_USER, "spring10")
    await admin_says(h, "/coupon_off BONUS5")

    lines = (await admin_says(h, "/coupons")).splitlines()
    assert lines[0] == "🎟 Bot coupons (3), newest first. The bot checks them and credits the bonus itself:"
    assert lines[1].startswith("OLD · bonus 5% · 0/∞ used · expired ")
    assert lines[2] == "BONUS5 · bonus $5.00 · 0/∞ used · disabled"
    assert lines[3] == "SPRING10 · bonus 10% · 2/100 used · min $10.00"


async def test_a_long_list_is_split_below_telegrams_limit(h: Harness) -> None:
    async with h.app.db.transaction() as tx:
        for i in range(120):
            await coupon_repo.create(tx, code=f"CODE{i:03d}_{'X' * 20}", kind=CouponKind.FIXED, value=100 + i,
                                     max_uses=1000, min_amount_cents=1000, expires_at=now_ts() + 86_400)
    mark = len(h.api.sent_to(CHAT))
    await admin_says(h, "/coupons")
    parts = h.texts(CHAT)[mark:]
    assert len(parts) > 1 and all(len(part) <= 4096 for part in parts)
    assert sum(part.count("_XXXX") for part in parts) == 120


# --- /coupon_off ---

async def test_a_disabled_coupon_can_no_longer_be_used(h: Harness) -> None:
    await admin_says(h, "/coupon_add SPRING10 10%")
    await h.app.topup.choose_coupon(user_id=USER, code="SPRING10", amount_cents=2500)  # usable before

    reply = await admin_says(h, "/coupon_off spring10")
    assert reply.startswith("✅ Coupon SPRING10 disabled")
    with pytest.raises(CouponError) as info:
        await h.app.topup.choose_coupon(user_id=USER, code="SPRING10", amount_cents=2500)
    assert info.value.problem is CouponProblem.NOT_FOUND
    assert [row[2:] for row in await audit_rows(h)] == [("coupon_add", "coupon:SPRING10"),
                                                        ("coupon_off", "coupon:SPRING10")]

    assert "already disabled" in await admin_says(h, "/coupon_off SPRING10")
    assert len(await audit_rows(h)) == 2


async def test_a_user_typing_a_disabled_code_in_the_conversation_is_told_it_is_unknown(h: Harness) -> None:
    await admin_says(h, "/coupon_add SPRING10 10%")
    await admin_says(h, "/coupon_off SPRING10")
    await h.send(USER, "/topup")
    await h.tap(USER, "USDT")
    await h.tap(USER, "TRON")
    await h.send(USER, "25")
    await h.send(USER, "SPRING10")
    assert "I don't know this coupon" in h.last_text(USER)


async def test_deposits_created_before_the_coupon_was_disabled_keep_their_bonus(h: Harness) -> None:
    await admin_says(h, "/coupon_add SPRING10 10%")
    deposit = await h.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                               amount_cents=2500, coupon_code="SPRING10")
    await admin_says(h, "/coupon_off SPRING10")
    await h.app.topup.simulate_payment(USER, deposit.id)
    assert await count(h, "SELECT SUM(amount_cents) FROM ledger WHERE kind = 'bonus'") == 250


@pytest.mark.parametrize(("text", "expected"), [
    ("/coupon_off", "Usage: /coupon_off"),
    ("/coupon_off A B", "Usage: /coupon_off"),
    ("/coupon_off NOPE", "⚠️ No coupon NOPE"),
    ("/coupon_off <b>x</b>", "⚠️ No coupon <b>x</b>"),
])
async def test_coupon_off_bad_input_changes_nothing(h: Harness, text: str, expected: str) -> None:
    await admin_says(h, "/coupon_add SPRING10 10%")
    assert expected in await admin_says(h, text)
    coupon = await coupon_repo.by_code(h.app.db.reader, "SPRING10")
    assert coupon is not None and coupon.active
    assert len(await audit_rows(h)) == 1


async def test_members_of_the_admin_chat_get_only_the_refusal(h: Harness) -> None:
    for command in ("/coupon_add X1 10%", "/coupons", "/coupon_off X1"):
        await h.send(USER, command, chat_id=CHAT)
        assert h.last_text(CHAT) == "⛔ Admins only."
    assert await count(h, "SELECT COUNT(*) FROM coupons") == 0
