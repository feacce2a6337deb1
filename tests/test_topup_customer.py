"""The top-up as a customer notices it (issue 12): taps, words, numbers, one live keyboard, errors with a way on.

The real dispatcher, a real SQLite file, the fake Bot API and the sandbox gateway.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.matrix import all_pairs, network_title
from services.store import CouponKind, DepositStatus, deposits
from services.store import coupons as coupon_repo
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

USER = 555
NBSP = "\u00a0"


def live_keyboards(h: Harness, chat_id: int = USER) -> list[dict[str, Any]]:
    """The bot's messages in the chat that still carry buttons a tap would act on."""
    return [m for (chat, _), m in sorted(h.api.messages.items(), key=lambda item: item[0][1])
            if chat == chat_id and any("callback_data" in b for row in (m.get("reply_markup") or {})
                                       .get("inline_keyboard", []) for b in row)]


async def at_the_amount_step(h: Harness) -> None:
    """/topup, USDT, TRON: the bot now asks how much."""
    await h.send(USER, "/topup")
    await h.tap(USER, "USDT")
    await h.tap(USER, "TRON")


async def make_coupon(h: Harness, code: str, percent: int = 10) -> None:
    async with h.app.db.transaction() as tx:
        await coupon_repo.create(tx, code=code, kind=CouponKind.PERCENT, value=percent)


# --- item 4: at most 4 taps and 1 typed amount, for every pair ----------------------------------------------------

class Counter:
    def __init__(self, h: Harness) -> None:
        self.h = h
        self.taps = 0
        self.typed = 0

    async def tap(self, label: str) -> None:
        self.taps += 1
        await self.h.tap(USER, label)

    async def type(self, text: str) -> None:
        self.typed += 1
        await self.h.send(USER, text)


async def test_every_pair_reaches_its_address_in_four_taps_and_one_typed_amount(api: FakeBotAPI,
                                                                                 tmp_path: Path) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", MAX_OPEN_DEPOSITS="100", MAX_DEPOSITS_PER_HOUR="100")
    try:
        await count_taps_for_every_pair(h)
    finally:
        await h.close()


async def count_taps_for_every_pair(h: Harness) -> None:
    pairs = [p for p in all_pairs() if h.app.matrix.has(p.coin, p.network)]
    assert len(pairs) >= 20  # the sandbox offers the whole matrix: the count below covers every pair
    counts = {}
    for pair in pairs:
        count = Counter(h)
        await h.send(USER, "/start")
        await count.tap("Top up")
        await count.tap(pair.coin)
        if "On which network" in h.last_text(USER):
            await count.tap(network_title(pair.network, pair.coin))
        await count.type("25")
        await count.tap("Create deposit")
        card = h.last(USER)
        assert "photo" in card and "Send exactly" in card["caption"], (pair, h.last_text(USER))
        assert network_title(pair.network, pair.coin) in card["caption"]
        counts[str(pair)] = (count.taps, count.typed)
        deposit = await deposits.get(h.app.db.reader, len(counts))
        assert deposit is not None and (deposit.coin, deposit.network) == (pair.coin, pair.network)
    assert {pair: c for pair, c in counts.items() if c[0] > 4 or c[1] > 1} == {}
    assert counts["USDT/TRON"] == (4, 1) and counts["BTC/BTC"] == (3, 1)


async def test_a_coupon_is_optional_on_the_confirmation(harness: Harness) -> None:
    await make_coupon(harness, "SAVE10")
    await at_the_amount_step(harness)
    await harness.send(USER, "25")
    confirm = harness.last(USER)
    assert "Please check your top-up" in confirm["text"]
    assert harness.buttons(confirm) == ["✅ Create deposit", "🎟 Add coupon", "⬅️ Back", "✖️ Cancel"]

    await harness.tap(USER, "Add coupon")
    await harness.send(USER, "save10")

    confirm = harness.last(USER)
    assert "Coupon: SAVE10, bonus +$2.50" in confirm["text"]
    assert "Add coupon" not in " ".join(harness.buttons(confirm))


# --- item 2: the card keeps the confirmation's promise -------------------------------------------------------------

async def test_card_shows_the_same_amount_bonus_and_total_as_the_confirmation(harness: Harness) -> None:
    await make_coupon(harness, "SAVE10")
    await at_the_amount_step(harness)
    await harness.send(USER, "12.50")
    await harness.tap(USER, "Add coupon")
    await harness.send(USER, "SAVE10")
    promise = "$12.50 + $1.25 bonus = $13.75"
    assert f"You will receive: {promise}" in harness.last_text(USER)

    await harness.tap(USER, "Create")

    assert f"You will be credited: {promise}" in harness.last_text(USER)


# --- item 5: one live keyboard --------------------------------------------------------------------------------------

async def test_typing_moves_the_flow_and_the_old_message_loses_its_buttons(harness: Harness) -> None:
    await harness.send(USER, "/start")
    await harness.tap(USER, "Top up")
    await harness.tap(USER, "USDT")
    await harness.tap(USER, "TRON")
    await harness.send(USER, "abc")      # an error: a new message with the amount buttons
    await harness.send(USER, "25")       # the confirmation: another new message

    live = live_keyboards(harness)
    assert len(live) == 1 and "Please check your top-up" in live[0]["text"]


async def test_an_old_main_menu_does_not_silently_replace_an_open_flow(harness: Harness) -> None:
    await harness.send(USER, "/start")
    old_menu = harness.last(USER)
    await harness.send(USER, "/topup")
    await harness.tap(USER, "USDT")
    flow = harness.last(USER)
    assert "On which network" in flow["text"]

    await harness.press(USER, "m:topup:0", message_id=old_menu["message_id"])

    retired = harness.api.messages[(USER, flow["message_id"])]
    assert "closed: a new one was started" in retired["text"] and not retired.get("reply_markup")
    assert len(live_keyboards(harness)) == 1


async def test_menu_button_from_help_keeps_the_open_flow_alive(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "USDT")
    flow = harness.last(USER)
    await harness.send(USER, "/help")
    await harness.tap(USER, "Menu")

    await harness.press(USER, "tn:USDT:TRON", message_id=flow["message_id"])

    assert "How much do you want to add" in harness.api.messages[(USER, flow["message_id"])]["text"]


async def test_a_card_shown_again_leaves_no_live_twin(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "BTC")
    await harness.send(USER, "10")
    await harness.tap(USER, "Create")
    first_card = harness.last(USER)

    await harness.send(USER, "/history")
    await harness.tap(USER, "Show deposit #1")

    second_card = harness.last(USER)
    assert second_card["message_id"] != first_card["message_id"] and "photo" in second_card
    assert not harness.api.messages[(USER, first_card["message_id"])].get("reply_markup")
    assert [m["message_id"] for m in live_keyboards(harness) if "photo" in m] == [second_card["message_id"]]


# --- item 7: every error carries the buttons of its step ------------------------------------------------------------

@pytest.mark.parametrize("typed", ["abc", "0.5", "1.234"])
async def test_amount_errors_keep_the_amount_buttons(harness: Harness, typed: str) -> None:
    await at_the_amount_step(harness)

    await harness.send(USER, typed)

    assert harness.buttons(harness.last(USER)) == ["$5", "$10", "$25", "$50", "$100", "⬅️ Back", "✖️ Cancel"]
    await harness.tap(USER, "$10")
    assert "Amount: $10.00" in harness.last_text(USER)


async def test_a_sticker_at_the_coupon_step_keeps_back_and_cancel(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "BTC")
    await harness.send(USER, "10")
    await harness.tap(USER, "Add coupon")

    await harness.feed({"message": {"message_id": 999, "from": {"id": USER, "is_bot": False, "first_name": "Test"},
                                    "chat": {"id": USER, "type": "private"}, "date": 0,
                                    "sticker": {"file_id": "s", "file_unique_id": "s", "type": "regular",
                                                "width": 512, "height": 512, "is_animated": False,
                                                "is_video": False}}})

    assert "doesn't look like a coupon code" in harness.last_text(USER)
    assert harness.buttons(harness.last(USER)) == ["⬅️ Back", "✖️ Cancel"]


async def test_words_at_the_network_step_get_the_networks_again(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "USDT")

    await harness.send(USER, "trc20 please")

    assert "Please pick the network with a button below" in harness.last_text(USER)
    assert "TRON (TRC-20)" in harness.buttons(harness.last(USER))
    assert len(live_keyboards(harness)) == 1


# --- item 8: limits are said when Top up is tapped ------------------------------------------------------------------

async def test_the_open_deposit_limit_is_said_at_top_up_with_history_offered(api: FakeBotAPI, tmp_path: Path) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", MAX_OPEN_DEPOSITS="1")
    try:
        await h.send(USER, "/start")
        await h.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="BTC", network="BTC", amount_cents=1000,
                                         coupon_code=None)
        await h.tap(USER, "Top up")

        assert "You already have 1 deposits waiting for payment" in h.last_text(USER)
        assert h.buttons(h.last(USER)) == ["🧾 History", "🏠 Menu"]
        await h.tap(USER, "History")
        assert "Show deposit #1" in " ".join(h.buttons(h.last(USER)))
    finally:
        await h.close()


# --- item 9: words and numbers ---------------------------------------------------------------------------------------

async def test_native_coins_have_no_token_standard_and_tokens_do(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "ETH")
    assert "ETH on Ethereum" in harness.last_text(USER) and "ERC-20" not in harness.last_text(USER)
    await harness.send(USER, "/topup")
    await harness.tap(USER, "USDT")
    assert "Ethereum (ERC-20)" in harness.buttons(harness.last(USER))


async def test_russian_money_is_written_the_russian_way(harness: Harness) -> None:
    await harness.send(USER, "/topup", language_code="ru")
    await harness.tap(USER, "USDT", language_code="ru")
    await harness.tap(USER, "TRON", language_code="ru")
    assert f"10{NBSP}000,00{NBSP}$" in harness.last_text(USER)
    assert f"5{NBSP}$" in harness.buttons(harness.last(USER))

    await harness.send(USER, "1 000", language_code="ru")

    assert f"1{NBSP}000,00{NBSP}$" in harness.last_text(USER)


@pytest.mark.parametrize("typed", ["1 000", "1,000", "1,000.00"])
async def test_thousands_are_read_as_amounts(harness: Harness, typed: str) -> None:
    await at_the_amount_step(harness)
    await harness.send(USER, typed)
    assert "Amount: $1,000.00" in harness.last_text(USER)


async def test_a_typed_coin_name_picks_the_coin(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.send(USER, "bitcoin")
    assert "BTC on Bitcoin" in harness.last_text(USER)
    await harness.send(USER, "/topup")
    await harness.send(USER, "usdt")
    assert "On which network" in harness.last_text(USER)
    await harness.send(USER, "/topup")
    await harness.send(USER, "banana")
    assert "I don't know that coin" in harness.last_text(USER)
    assert "USDT" in harness.buttons(harness.last(USER))


async def test_balance_mentions_deposits_waiting_for_payment(harness: Harness) -> None:
    await harness.send(USER, "/balance")
    assert "waiting" not in harness.last_text(USER)
    await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="BTC", network="BTC", amount_cents=1000,
                                           coupon_code=None)
    await harness.send(USER, "/balance")
    assert "Deposits waiting for payment: 1" in harness.last_text(USER)


async def test_support_contact_is_shown_in_help_and_on_failures(api: FakeBotAPI, tmp_path: Path) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", SUPPORT_CONTACT="@shop_support")
    try:
        await h.send(USER, "/help")
        assert "Need help? Write to @shop_support" in h.last_text(USER)
    finally:
        await h.close()


@pytest.mark.parametrize(("telegram", "greeting"), [("be", "Привет"), ("kk", "Привет"), ("uk", "Hi"), ("de", "Hi")])
async def test_close_languages_get_russian_and_ukrainian_does_not(harness: Harness, telegram: str,
                                                                  greeting: str) -> None:
    await harness.send(USER, "/start", language_code=telegram)
    assert harness.last_text(USER).startswith(f"👋 {greeting}")


async def test_an_abandoned_deposit_is_never_counted_as_waiting(harness: Harness) -> None:
    await harness.send(USER, "/start")
    reservation = await harness.app.topup.reserve_deposit(user_id=USER, chat_id=USER, coin="BTC", network="BTC",
                                                          amount_cents=1000, coupon_code=None)
    assert await harness.app.topup.abandon_creation(USER, reservation.deposit_id)
    deposit = await deposits.get(harness.app.db.reader, reservation.deposit_id)
    assert deposit is not None and deposit.status is DepositStatus.CANCELLED
