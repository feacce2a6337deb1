"""Bad input gets a clear message and changes nothing: typed amounts and coupons, stale and forged buttons."""
from __future__ import annotations

import asyncio

import pytest

from services.store import CouponKind, DepositStatus, deposits, now_ts, users
from services.store import coupons as coupon_repo
from services.store.db import fetch_value
from tests.harness import Harness

USER = 555
OTHER = 666
STALE = "This menu is out of date."


async def balance_of(h: Harness, user_id: int) -> int:
    user = await users.get(h.app.db.reader, user_id)
    assert user is not None
    return user.balance_cents


async def count(h: Harness, sql: str, *params: object) -> int:
    return int(await fetch_value(h.app.db.reader, sql, params))


async def reach_amount_step(h: Harness) -> None:
    await h.send(USER, "/topup")
    await h.tap(USER, "USDT")
    await h.tap(USER, "TRON")
    assert "How much do you want to add" in h.last_text(USER)


async def reach_confirm(h: Harness, amount: str = "25") -> None:
    await reach_amount_step(h)
    await h.send(USER, amount)
    assert "Please check your top-up" in h.last_text(USER)


async def reach_coupon_step(h: Harness, amount: str = "25") -> None:
    await reach_confirm(h, amount)
    await h.tap(USER, "Add coupon")
    assert "Send your coupon code" in h.last_text(USER)


async def create_card(h: Harness, amount: str = "12.50") -> int:
    """Go through the flow to a pending deposit card; returns the card's message id."""
    await reach_confirm(h, amount)
    await h.tap(USER, "Create")
    card = h.last(USER)
    assert "photo" in card
    return card["message_id"]


async def make_coupon(h: Harness, code: str, *, percent: int = 10, **options: object) -> int:
    async with h.app.db.transaction() as tx:
        coupon_id = await coupon_repo.create(tx, code=code, kind=CouponKind.PERCENT, value=percent, **options)
    assert coupon_id is not None
    return coupon_id


async def paid_deposit_with_coupon(h: Harness, user_id: int, code: str) -> None:
    await h.send(user_id, "/start")
    deposit = await h.app.topup.create_deposit(user_id=user_id, chat_id=user_id, coin="USDT", network="TRON",
                                               amount_cents=2500, coupon_code=code)
    await h.app.topup.simulate_payment(user_id, deposit.id)


def assert_nothing_crashed(h: Harness, chat_id: int = USER) -> None:
    assert not any("Something went wrong" in text for text in h.texts(chat_id))
    assert not any("Something went wrong" in toast for toast in h.toasts())


# --- typed amounts ---

@pytest.mark.parametrize(("typed", "complaint"), [
    ("abc", "I couldn't read that amount"),
    ("-5", "I couldn't read that amount"),
    ("0", "The amount must be above zero"),
    ("5.123", "Use at most two decimals"),
    ("1e3", "I couldn't read that amount"),
    ("1.000", "Use at most two decimals"),
    ("", "I couldn't read that amount"),
    ("5 dollars", "I couldn't read that amount"),
    ("0.5", "The minimum top-up is $1.00"),
    ("10000.01", "The maximum top-up is $10,000.00"),
])
async def test_bad_amount_is_explained_and_flow_stays_on_amount(harness: Harness, typed: str, complaint: str) -> None:
    await reach_amount_step(harness)

    await harness.send(USER, typed)
    assert complaint in harness.last_text(USER)
    assert "Please check your top-up" not in harness.last_text(USER)

    await harness.send(USER, "5")
    assert "Amount: $5.00" in harness.last_text(USER)


@pytest.mark.parametrize(("typed", "shown"), [
    ("5", "$5.00"),
    ("5.15", "$5.15"),
    ("5,15", "$5.15"),
    ("$5", "$5.00"),
])
async def test_accepted_amount_forms_reach_coupon_step(harness: Harness, typed: str, shown: str) -> None:
    await reach_amount_step(harness)
    await harness.send(USER, typed)
    assert f"Amount: {shown}" in harness.last_text(USER)
    assert "Please check your top-up" in harness.last_text(USER)


# --- coupons ---

async def test_unknown_coupon_is_refused_and_user_can_skip(harness: Harness) -> None:
    await reach_coupon_step(harness)

    await harness.send(USER, "NOSUCHCODE")
    assert "I don't know this coupon" in harness.last_text(USER)

    await harness.tap(USER, "Back")
    assert "Coupon: none" in harness.last_text(USER)
    assert "Amount: $25.00" in harness.last_text(USER)


async def test_expired_coupon_is_refused(harness: Harness) -> None:
    await make_coupon(harness, "OLD10", expires_at=now_ts() - 60)
    await reach_coupon_step(harness)
    await harness.send(USER, "OLD10")
    assert "This coupon has expired" in harness.last_text(USER)


async def test_used_up_coupon_is_refused(harness: Harness) -> None:
    await make_coupon(harness, "ONCE", max_uses=1)
    await paid_deposit_with_coupon(harness, OTHER, "ONCE")  # someone else took the only use

    await reach_coupon_step(harness)
    await harness.send(USER, "ONCE")
    assert "This coupon has been fully used" in harness.last_text(USER)


async def test_coupon_already_used_by_this_user_is_refused(harness: Harness) -> None:
    await make_coupon(harness, "WELCOME")
    await paid_deposit_with_coupon(harness, USER, "WELCOME")

    await reach_coupon_step(harness)
    await harness.send(USER, "WELCOME")
    assert "You have already used this coupon" in harness.last_text(USER)


async def test_coupon_below_its_minimum_names_the_minimum(harness: Harness) -> None:
    await make_coupon(harness, "BIG10", min_amount_cents=5000)
    await reach_coupon_step(harness, "25")
    await harness.send(USER, "BIG10")
    assert "This coupon needs a top-up of at least $50.00" in harness.last_text(USER)


@pytest.mark.parametrize("typed", ["SAVE 10", "🎉🎉🎉", "x", "A" * 33])
async def test_malformed_coupon_code_gets_format_message(harness: Harness, typed: str) -> None:
    await reach_coupon_step(harness)
    await harness.send(USER, typed)
    assert "That doesn't look like a coupon code" in harness.last_text(USER)


async def test_valid_percent_coupon_adds_bonus_to_balance(harness: Harness) -> None:
    await make_coupon(harness, "SAVE10", percent=10)
    await reach_coupon_step(harness, "25")

    await harness.send(USER, "save10")  # codes are not case-sensitive
    confirm = harness.last_text(USER)
    assert "Coupon: SAVE10, bonus +$2.50" in confirm
    assert "You will receive: $25.00 + $2.50 bonus = $27.50" in confirm

    await harness.tap(USER, "Create")
    await harness.tap(USER, "Simulate")
    await harness.deliver()

    assert "Coupon bonus: +$2.50" in harness.last_text(USER)
    assert "New balance: $27.50" in harness.last_text(USER)
    assert await balance_of(harness, USER) == 2750


# --- stale and forged buttons ---

async def test_coin_button_on_old_flow_message_is_stale_and_not_edited(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    first = harness.last(USER)
    await harness.send(USER, "/topup")
    old = harness.api.messages[(USER, first["message_id"])]  # retired by the new flow: says so, no buttons
    assert "closed" in old["text"] and not old.get("reply_markup")
    edits_before = len(harness.api.calls_of("editMessageText"))

    await harness.press(USER, "tc:USDT", message_id=old["message_id"])

    assert harness.toasts()[-1] == STALE
    assert len(harness.api.calls_of("editMessageText")) == edits_before
    assert harness.api.messages[(USER, old["message_id"])] == old


async def test_forged_unknown_coin_is_stale(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    flow = harness.last(USER)

    await harness.press(USER, "tc:FAKE", message_id=flow["message_id"])

    assert harness.toasts()[-1] == STALE
    assert harness.api.messages[(USER, flow["message_id"])] == flow


# BTC/BTC is a real pair: only the check against the flow's coin (USDT) refuses it, not the matrix.
@pytest.mark.parametrize("data", ["tn:BTC:TRON", "tn:BTC:BTC"])
async def test_forged_network_of_another_coin_is_stale(harness: Harness, data: str) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "USDT")
    flow = harness.last(USER)

    await harness.press(USER, data, message_id=flow["message_id"])

    assert harness.toasts()[-1] == STALE
    assert "On which network" in harness.last_text(USER)


@pytest.mark.parametrize("data", ["ta:1", "ta:99999999"])
async def test_forged_amount_outside_limits_is_stale(harness: Harness, data: str) -> None:
    await reach_amount_step(harness)
    flow = harness.last(USER)

    await harness.press(USER, data, message_id=flow["message_id"])

    assert harness.toasts()[-1] == STALE
    assert "Please check your top-up" not in harness.last_text(USER)
    await harness.send(USER, "5")  # still on the amount step
    assert "Amount: $5.00" in harness.last_text(USER)


@pytest.mark.parametrize("data", ["zzz", "d:check:notanumber", "d:explode:1", "m:nowhere"])
async def test_garbage_callback_data_is_stale_and_nothing_crashes(harness: Harness, data: str) -> None:
    await harness.send(USER, "/start")
    menu = harness.last(USER)

    await harness.press(USER, data, message_id=menu["message_id"])

    assert harness.toasts()[-1] == STALE
    assert harness.api.messages[(USER, menu["message_id"])] == menu
    assert_nothing_crashed(harness)


@pytest.mark.parametrize("action", ["sim", "check", "cancel"])
async def test_forged_huge_deposit_id_is_stale(harness: Harness, action: str) -> None:
    await harness.send(USER, "/start")

    await harness.press(USER, f"d:{action}:{2**64}", message_id=harness.last(USER)["message_id"])

    assert harness.toasts()[-1] == STALE
    assert_nothing_crashed(harness)


@pytest.mark.parametrize("action", ["sim", "check", "cancel"])
async def test_buttons_for_someone_elses_deposit_are_stale(harness: Harness, action: str) -> None:
    await harness.send(USER, "/start")
    theirs = await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                                    amount_cents=2500, coupon_code=None)
    await harness.send(OTHER, "/start")

    await harness.press(OTHER, f"d:{action}:{theirs.id}", message_id=harness.last(OTHER)["message_id"])

    assert harness.toasts()[-1] == STALE
    deposit = await deposits.get(harness.app.db.reader, theirs.id)
    assert deposit is not None and deposit.status is DepositStatus.PENDING
    assert await balance_of(harness, USER) == 0
    assert await balance_of(harness, OTHER) == 0
    assert_nothing_crashed(harness, OTHER)


async def test_double_tap_on_create_makes_one_deposit(harness: Harness) -> None:
    await reach_confirm(harness)
    confirm = harness.last(USER)

    # Both taps arrive before either is handled, as when a user double-taps on a slow connection.
    await asyncio.gather(harness.press(USER, "tf:create", message_id=confirm["message_id"]),
                         harness.press(USER, "tf:create", message_id=confirm["message_id"]))

    assert await count(harness, "SELECT COUNT(*) FROM deposits") == 1
    assert len(harness.api.calls_of("sendPhoto")) == 1
    assert harness.toasts()[-2:].count(STALE) == 1


# --- cancelling a deposit ---

async def test_cancelled_card_says_do_not_send_and_offers_no_payment(harness: Harness) -> None:
    card_id = await create_card(harness)

    await harness.tap(USER, "Cancel")

    card = harness.api.messages[(USER, card_id)]
    assert "Cancelled" in card["caption"]
    assert "Do not send any funds to this address any more." in card["caption"]
    assert harness.buttons(card) == ["💳 New top-up"]
    assert harness.toasts()[-1] == "Deposit cancelled. Do not send funds to this address."


async def test_cancelling_twice_says_it_can_no_longer_be_cancelled(harness: Harness) -> None:
    card_id = await create_card(harness)
    await harness.tap(USER, "Cancel")

    await harness.press(USER, "d:cancel:1", message_id=card_id)

    (*_, alert) = harness.api.calls_of("answerCallbackQuery")
    assert "can't be cancelled" in alert.params["text"]
    assert alert.params.get("show_alert") is True
    assert_nothing_crashed(harness)


async def test_payment_arriving_after_cancel_is_credited_once(harness: Harness) -> None:
    card_id = await create_card(harness, "12.50")
    await harness.tap(USER, "Cancel")

    await harness.press(USER, "d:sim:1", message_id=card_id)
    await harness.press(USER, "d:sim:1", message_id=card_id)
    await harness.deliver()

    assert await balance_of(harness, USER) == 1250
    assert await count(harness, "SELECT COUNT(*) FROM ledger WHERE deposit_id = 1") == 1
    assert "Paid" in harness.api.messages[(USER, card_id)]["caption"]
    assert sum("Payment received for deposit #1" in text for text in harness.texts(USER)) == 1


# --- group chats ---

async def test_group_chat_messages_get_no_answer(harness: Harness) -> None:
    for text in ("/start", "/topup", "25", "hello"):
        await harness.send(USER, text, chat_id=-100777)

    assert harness.api.sent_to(-100777) == []
    assert harness.api.calls_of("sendMessage") == []
