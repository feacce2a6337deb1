"""The top-up conversation as a user lives it.

The real dispatcher, a real SQLite file, the fake Bot API and the sandbox gateway.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from handlers.ui import views
from services.store import deposits, users
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID, Harness

USER = 555
MENU_LABELS = ("Top up", "Balance", "History", "Language", "Help")


async def balance_of(h: Harness, user_id: int = USER) -> int:
    user = await users.get(h.app.db.reader, user_id)
    assert user is not None
    return user.balance_cents


async def reach_amount_step(h: Harness, coin: str = "USDT", network: str = "TRON (TRC-20)") -> None:
    await h.send(USER, "/topup")
    await h.tap(USER, coin)
    await h.tap(USER, network)
    assert "How much do you want to add" in h.last_text(USER)


async def reach_confirm(h: Harness, amount: str = "12,50") -> None:
    await reach_amount_step(h)
    await h.send(USER, amount)
    assert "Please check your top-up" in h.last_text(USER)


def deposit_ids_shown(text: str) -> list[int]:
    return [int(n) for n in re.findall(r"#(\d+) ·", text)]


# --- /start and languages ---

async def test_start_greets_in_english_with_menu_and_test_mode(harness: Harness) -> None:
    await harness.send(USER, "/start")

    greeting = harness.last(USER)
    assert "Hi, Test!" in greeting["text"]
    assert "Your balance: $0.00" in greeting["text"]
    assert "Test mode" in greeting["text"]
    labels = harness.buttons(greeting)
    assert all(any(label in button for button in labels) for label in MENU_LABELS), labels


async def test_start_greets_russian_telegram_user_in_russian(harness: Harness) -> None:
    await harness.send(USER, "/start", language_code="ru")

    greeting = harness.last(USER)
    assert "Привет, Test!" in greeting["text"]
    assert "Тестовый режим" in greeting["text"]
    assert harness.buttons(greeting) == ["💳 Пополнить", "💰 Баланс", "🧾 История", "🌐 Язык", "❓ Помощь"]


async def test_start_falls_back_to_english_for_unsupported_language(harness: Harness) -> None:
    await harness.send(USER, "/start", language_code="de")

    assert "Hi, Test!" in harness.last_text(USER)
    assert "💳 Top up" in harness.buttons(harness.last(USER))


async def test_choosing_russian_rerenders_menu_and_later_messages(harness: Harness) -> None:
    await harness.send(USER, "/start")
    await harness.tap(USER, "Language")
    assert "Choose your language" in harness.last_text(USER)

    await harness.tap(USER, "Русский")

    assert "Привет, Test!" in harness.last_text(USER)
    assert "💳 Пополнить" in harness.buttons(harness.last(USER))
    assert harness.toasts()[-1] == "Язык изменён на русский."
    await harness.send(USER, "/balance")
    assert "Ваш баланс: 0,00\u00a0$" in harness.last_text(USER)  # money the Russian way


async def test_language_choice_survives_restart(api: FakeBotAPI, tmp_path: Path) -> None:
    db_path = tmp_path / "bot.sqlite3"
    first = await Harness.start(api, db_path)
    try:
        await first.send(USER, "/start")
        await first.tap(USER, "Language")
        await first.tap(USER, "Русский")
    finally:
        await first.close()

    second = await Harness.start(api, db_path)
    try:
        await second.send(USER, "/start")  # Telegram still says "en": the choice made in the bot wins
        assert "Привет, Test!" in second.last_text(USER)
    finally:
        await second.close()


async def test_help_shows_configured_min_and_max(api: FakeBotAPI, tmp_path: Path) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", MIN_AMOUNT_USD="2", MAX_AMOUNT_USD="500")
    try:
        await h.send(USER, "/help")
        assert "($2.00 to $500.00)" in h.last_text(USER)
    finally:
        await h.close()


async def test_help_button_shows_default_limits(harness: Harness) -> None:
    await harness.send(USER, "/start")
    await harness.tap(USER, "Help")
    assert "How to top up" in harness.last_text(USER)
    assert "($1.00 to $10,000.00)" in harness.last_text(USER)


# --- the full top-up ---

async def test_full_topup_credits_balance_and_tells_user_and_admin(harness: Harness) -> None:
    h = harness
    await h.send(USER, "/start")
    await h.tap(USER, "Top up")
    assert "Which coin will you pay with?" in h.last_text(USER)
    await h.tap(USER, "USDT")
    assert "On which network" in h.last_text(USER)
    await h.tap(USER, "TRON")
    await h.send(USER, "12,50")
    assert "Amount: $12.50" in h.last_text(USER)

    confirm = h.last_text(USER)
    assert "Coin: USDT" in confirm
    assert "Network: TRON (TRC-20)" in confirm
    assert "Amount: $12.50" in confirm
    assert "Coupon: none" in confirm

    await h.tap(USER, "Create")

    (photo_call,) = h.api.calls_of("sendPhoto")
    assert (photo_call.file("photo") or b"").startswith(b"\x89PNG")
    deposit = await deposits.get(h.app.db.reader, 1)
    assert deposit is not None and deposit.address and deposit.expires_at
    card = h.last(USER)
    assert "photo" in card
    assert "Deposit #1 is ready" in h.texts(USER)[-2]
    caption = card["caption"]
    assert deposit.address in caption
    assert "Send exactly: 12.50 USDT" in caption
    assert ("Send only USDT on TRON (TRC-20). Anything else sent to this address (another coin, or USDT on another "
            "network) is lost for good") in caption
    assert f"Valid until {views.format_time(deposit.expires_at)}" in caption
    assert h.buttons(card) == ["📋 Copy address", "📋 Copy amount", "🧪 Simulate payment", "🔄 Check status",
                               "✖️ Cancel"]

    await h.tap(USER, "Simulate")
    await h.deliver()

    paid = h.last_text(USER)
    assert "Payment received for deposit #1" in paid
    assert "Credited: $12.50" in paid
    assert "New balance: $12.50" in paid
    assert "Paid" in h.api.messages[(USER, card["message_id"])]["caption"]
    admin_lines = h.texts(ADMIN_CHAT_ID)
    assert len(admin_lines) == 1 and "Deposit #1 paid: $12.50" in admin_lines[0]

    await h.send(USER, "/balance")
    assert "Your balance: $12.50" in h.last_text(USER)
    assert await balance_of(h) == 1250


async def test_balance_button_under_payment_notice_keeps_the_receipt(harness: Harness) -> None:
    await reach_confirm(harness)
    await harness.tap(USER, "Create")
    await harness.tap(USER, "Simulate")
    await harness.deliver()
    receipt = harness.last(USER)
    assert "Payment received for deposit #1" in receipt["text"]

    await harness.tap(USER, "Balance")

    assert "Payment received for deposit #1" in harness.api.messages[(USER, receipt["message_id"])]["text"]
    assert "Your balance: $12.50" in harness.last_text(USER)


async def test_single_network_coin_skips_network_step(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "BTC")

    text = harness.last_text(USER)
    assert "BTC on Bitcoin" in text
    assert "How much do you want to add" in text


async def test_quick_amount_button_goes_to_coupon_step(harness: Harness) -> None:
    await reach_amount_step(harness)
    await harness.tap(USER, "$25")  # quick amounts drop the cents

    assert "Amount: $25.00" in harness.last_text(USER)
    assert "Please check your top-up" in harness.last_text(USER)


# --- going back and giving up ---

async def test_back_from_amount_to_networks_then_to_coins(harness: Harness) -> None:
    await reach_amount_step(harness)

    await harness.tap(USER, "Back")
    assert "On which network will you send it?" in harness.last_text(USER)
    assert "TRON (TRC-20)" in harness.buttons(harness.last(USER))

    await harness.tap(USER, "Back")
    assert "Which coin will you pay with?" in harness.last_text(USER)
    assert "USDT" in harness.buttons(harness.last(USER))


async def test_back_from_single_network_amount_goes_to_coins(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "BTC")
    await harness.tap(USER, "Back")
    assert "Which coin will you pay with?" in harness.last_text(USER)


async def test_back_from_coupon_to_confirm_then_to_amount(harness: Harness) -> None:
    await reach_confirm(harness)
    await harness.tap(USER, "Add coupon")
    assert "Send your coupon code" in harness.last_text(USER)

    await harness.tap(USER, "Back")
    assert "Please check your top-up" in harness.last_text(USER)
    assert "Coupon: none" in harness.last_text(USER)

    await harness.tap(USER, "Back")
    assert "How much do you want to add" in harness.last_text(USER)


async def test_cancel_command_ends_flow_so_numbers_are_not_amounts(harness: Harness) -> None:
    await reach_amount_step(harness)

    await harness.send(USER, "/cancel")
    assert "Top-up cancelled" in harness.last_text(USER)

    await harness.send(USER, "25")
    assert "I didn't understand that" in harness.last_text(USER)
    assert "💳 Top up" in harness.buttons(harness.last(USER))


async def test_cancel_with_nothing_going_on_says_so(harness: Harness) -> None:
    await harness.send(USER, "/cancel")
    assert "There is nothing to cancel." in harness.last_text(USER)


async def test_cancel_button_ends_flow(harness: Harness) -> None:
    await reach_amount_step(harness)

    await harness.tap(USER, "Cancel")
    assert "Top-up cancelled. Nothing was created." in harness.last_text(USER)

    await harness.send(USER, "25")
    assert "I didn't understand that" in harness.last_text(USER)


@pytest.mark.parametrize(("command", "answer"), [
    ("/balance", "Your balance: $0.00"),
    ("/history", "You have no deposits yet."),
    ("/language", "Choose your language"),
])
async def test_menu_commands_work_at_the_amount_step(harness: Harness, command: str, answer: str) -> None:
    await reach_amount_step(harness)
    await harness.send(USER, command)
    assert answer in harness.last_text(USER)


async def test_balance_command_works_at_the_coupon_step(harness: Harness) -> None:
    await reach_amount_step(harness)
    await harness.send(USER, "25")
    await harness.send(USER, "/balance")
    assert "Your balance: $0.00" in harness.last_text(USER)


async def test_flow_survives_restart(api: FakeBotAPI, tmp_path: Path) -> None:
    db_path = tmp_path / "bot.sqlite3"
    first = await Harness.start(api, db_path)
    try:
        await reach_amount_step(first)
    finally:
        await first.close()

    second = await Harness.start(api, db_path)
    try:
        await second.send(USER, "30")
        assert "Amount: $30.00" in second.last_text(USER)
        assert "Please check your top-up" in second.last_text(USER)
    finally:
        await second.close()


# --- history ---

async def test_history_of_new_user_is_empty(harness: Harness) -> None:
    await harness.send(USER, "/history")
    assert "You have no deposits yet." in harness.last_text(USER)


async def test_history_pages_newest_first(harness: Harness) -> None:
    await harness.send(USER, "/start")
    for _ in range(7):
        await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                               amount_cents=500, coupon_code=None)

    await harness.send(USER, "/history")
    assert "page 1 of 2" in harness.last_text(USER)
    assert deposit_ids_shown(harness.last_text(USER)) == [7, 6, 5, 4, 3]

    await harness.tap(USER, "Older")
    assert "page 2 of 2" in harness.last_text(USER)
    assert deposit_ids_shown(harness.last_text(USER)) == [2, 1]

    await harness.tap(USER, "Newer")
    assert deposit_ids_shown(harness.last_text(USER)) == [7, 6, 5, 4, 3]


async def test_forged_history_page_is_out_of_date_and_changes_nothing(harness: Harness) -> None:
    await harness.send(USER, "/start")
    await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                           amount_cents=500, coupon_code=None)
    await harness.send(USER, "/history")
    page = harness.last(USER)
    edits_before = len(harness.api.calls_of("editMessageText"))

    await harness.press(USER, "h:99", message_id=page["message_id"])

    assert harness.toasts()[-1] == "This menu is out of date."
    assert len(harness.api.calls_of("editMessageText")) == edits_before
    assert harness.last(USER) == page


async def test_history_shows_a_pending_deposits_card_again(harness: Harness, api: FakeBotAPI) -> None:
    """If the card got lost (or scrolled away), History brings back the address and QR code."""
    await harness.send(USER, "/start")
    pending = await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                                     amount_cents=1500, coupon_code=None)
    paid = await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="BTC", network="BTC",
                                                  amount_cents=1000, coupon_code=None)
    await harness.app.topup.simulate_payment(USER, paid.id)
    await harness.send(USER, "/history")
    labels = harness.buttons(harness.last(USER))
    assert f"🧾 Show deposit #{pending.id}" in labels
    assert f"🧾 Show deposit #{paid.id}" not in labels  # nothing to pay there any more

    await harness.tap(USER, f"Show deposit #{pending.id}")
    card = harness.last(USER)
    assert pending.address in card["caption"] and "Waiting for payment" in card["caption"]
    assert api.calls_of("sendPhoto")[-1].file("photo").startswith(b"\x89PNG")
    # the new card is the one that follows the status from now on
    await harness.tap(USER, "Simulate payment")
    assert "Paid" in api.messages[(USER, card["message_id"])]["caption"]
