"""The admin chat as staff read it: one language (ADMIN_LOCALE), no internal words, refusals that say why.

The real dispatcher and delivery worker, against the fake Bot API and fake gateways over HTTP.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from services.coupons import add_coupon, parse_coupon_spec
from services.gateways.cryptomus import CryptomusGateway
from services.gateways.smsonline import SMSOnlineGateway
from services.store import users
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.fakes.smsonline import FakeSMSOnline
from tests.harness import ADMIN_CHAT_ID, Harness

ADMIN, MEMBER, CUSTOMER = 501, 502, 555
CHAT = ADMIN_CHAT_ID


async def start(api: FakeBotAPI, tmp_path: Path, **env: str) -> Harness:
    api.chat_admins[CHAT] = [ADMIN]
    h = await Harness.start(api, tmp_path / "bot.sqlite3", **env)
    await h.send(CUSTOMER, "/start", username="anna", first_name="Anna")
    return h


async def paid(h: Harness, cents: int, coupon: str | None = None) -> None:
    deposit = await h.app.topup.create_deposit(user_id=CUSTOMER, chat_id=CUSTOMER, coin="USDT", network="TRON",
                                               amount_cents=cents, coupon_code=coupon)
    await h.app.topup.simulate_payment(CUSTOMER, deposit.id)
    await h.deliver()


async def test_admin_chat_speaks_admin_locale_whatever_each_admins_telegram_language(api, tmp_path):
    h = await start(api, tmp_path, ADMIN_LOCALE="ru")
    try:
        await h.send(ADMIN, "/debit 555 5 x", chat_id=CHAT, language_code="en")
        assert "списание" in h.last_text(CHAT)  # a reply to an English-speaking admin, in Russian
        await paid(h, 1000)
        line = h.last_text(CHAT)  # a line nobody asked for
        assert "оплачен" in line and "$10.00" in line
        await h.send(CUSTOMER, "/balance", language_code="en")
        assert "balance" in h.last_text(CUSTOMER).lower()  # customers keep their own language
    finally:
        await h.close()


async def test_admin_locale_defaults_to_default_locale_not_the_admins_language(api, tmp_path):
    h = await start(api, tmp_path, DEFAULT_LOCALE="en")
    try:
        await h.send(ADMIN, "/help", chat_id=CHAT, language_code="ru")
        assert "Admin commands" in h.last_text(CHAT)
    finally:
        await h.close()


async def test_the_admin_command_menu_is_in_admin_locale(api, tmp_path):
    from bot.app import set_commands

    h = await start(api, tmp_path, ADMIN_LOCALE="ru")
    try:
        await set_commands(h.bot, h.app.locales, CHAT)
        admin_menu = next(c for c in api.calls_of("setMyCommands") if c.params["scope"].get("chat_id") == CHAT)
        assert any("Баланс" in c["description"] or "баланс" in c["description"] for c in admin_menu.params["commands"])
    finally:
        await h.close()


async def test_a_member_tapping_an_admins_confirm_is_told_admins_only(api, tmp_path):
    h = await start(api, tmp_path)
    try:
        await h.send(ADMIN, "/credit 555 5 goodwill", chat_id=CHAT)
        await h.tap(MEMBER, "Confirm", chat_id=CHAT)
        assert h.toasts()[-1] == "⛔ Admins only."
        user = await users.get(h.app.db.reader, CUSTOMER)
        assert user is not None and user.balance_cents == 0
        await h.tap(ADMIN, "Confirm", chat_id=CHAT)  # the button still works for the admin who asked
        user = await users.get(h.app.db.reader, CUSTOMER)
        assert user is not None and user.balance_cents == 500
    finally:
        await h.close()


async def test_the_paid_line_leaves_out_a_zero_bonus(api, tmp_path):
    h = await start(api, tmp_path)
    try:
        await paid(h, 1000)
        assert "Deposit #1 paid: $10.00" in h.last_text(CHAT) and "Bonus" not in h.last_text(CHAT)
        await add_coupon(h.app.db, parse_coupon_spec("SPRING10 10%"))
        await paid(h, 2000, coupon="SPRING10")
        assert "Bonus $2.00" in h.last_text(CHAT)
    finally:
        await h.close()


async def test_gateway_never_prints_a_question_mark_for_a_missing_figure(api, tmp_path):
    async with FakeCryptomus(merchant_id="m-1", payment_key="pay-key") as fake:
        fake.merchant_balances[0].update(balance="12.50000000", balance_usd=None)
        gateway = CryptomusGateway(fake.base_url, "m-1", "pay-key", callback_url=None, timeout_seconds=2)
        h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway, ADMIN_USER_IDS=str(ADMIN))
        try:
            await h.send(ADMIN, "/gateway", chat_id=CHAT)
            text = h.last_text(CHAT)
            assert "12.5" in text and "not reported" in text and "?" not in text
        finally:
            await h.close()


@pytest.mark.parametrize("missing", ["balance", "totalCharges"])
async def test_gateway_on_smsonline_says_not_reported_for_a_missing_balance_field(api, tmp_path, missing):
    async with FakeSMSOnline(user_id="op-1", api_key="sms-key") as fake:
        fake.omit_balance_fields = {missing}
        gateway = SMSOnlineGateway(fake.base_url, "op-1", "sms-key", timeout_seconds=0.5)
        h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway, ADMIN_USER_IDS=str(ADMIN))
        try:
            await h.send(ADMIN, "/gateway", chat_id=CHAT)
            text = h.last_text(CHAT)
            assert "Account balance:" in text and "not reported" in text and "?" not in text
        finally:
            await h.close()


async def test_a_failure_in_the_admin_chat_is_reported_in_admin_locale(api, tmp_path):
    h = await start(api, tmp_path, ADMIN_LOCALE="ru")
    try:
        await h.send(ADMIN, "/credit 555 5 goodwill", chat_id=CHAT, language_code="en")
        api.fail_next("editMessageText", status=400, description="Bad Request: something unexpected")
        await h.tap(ADMIN, "Подтвердить", chat_id=CHAT, language_code="en")
        assert h.toasts()[-1].startswith("⚠️ Что-то пошло не так")
    finally:
        await h.close()
