"""SMSOnline's extra ways to pay: a Cryptomus payment page (V3 invoice or V2 checkout) and a bank card (Pay4bit).

These give a link, not an address. A page payment is confirmed only by an exact payId match with a paid status
in the account's history; a card payment can't be followed through the API and goes to the operator.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from services.gateways.smsonline import SMSOnlineGateway
from services.store import DepositStatus
from services.store import deposits, users
from services.store.db import fetch_all
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.smsonline import FakeSMSOnline
from tests.harness import ADMIN_CHAT_ID, Harness

USER = 611
SMS_USER, SMS_KEY = "operator-1", "test-api-key"


@pytest.fixture
async def sms():
    async with FakeSMSOnline(user_id=SMS_USER, api_key=SMS_KEY,
                             coupons={"SMS10": {"percentage": 10, "status": "issued", "expired": False}}) as fake:
        yield fake


async def start(api: FakeBotAPI, tmp_path: Path, sms: FakeSMSOnline, methods: set[str], *,
                v2: bool = False) -> Harness:
    gateway = SMSOnlineGateway(sms.base_url, SMS_USER, SMS_KEY, link_methods=frozenset(methods),
                               v2_api_url=sms.base_url if v2 else None)
    return await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway)


async def to_confirm(h: Harness, label: str, amount: str = "25", coupon: str | None = None) -> None:
    await h.send(USER, "/topup")
    await h.tap(USER, label)
    await h.send(USER, amount)
    if coupon:
        await h.tap(USER, "Add coupon")
        await h.send(USER, coupon)


async def the_deposit(h: Harness):
    [row] = await fetch_all(h.app.db.reader, "SELECT id FROM deposits WHERE order_id IS NOT NULL")
    return await deposits.get(h.app.db.reader, row["id"])


async def balance(h: Harness) -> int:
    return (await users.get(h.app.db.reader, USER)).balance_cents


async def test_a_page_payment_from_choice_to_credit(api: FakeBotAPI, tmp_path: Path, sms: FakeSMSOnline) -> None:
    h = await start(api, tmp_path, sms, {"page", "card"})
    try:
        await h.send(USER, "/topup")
        labels = h.buttons(h.last(USER))
        assert "🌐 Other coins: pay on a payment page" in labels and "💳 Pay by bank card" in labels
        await h.tap(USER, "payment page")
        assert "in whole US dollars" in h.last_text(USER)
        await h.send(USER, "12.50")
        assert "whole dollars only" in h.last_text(USER)
        await h.send(USER, "25")
        assert "Payment method: Cryptomus payment page" in h.last_text(USER)
        await h.tap(USER, "Create")
        assert api.calls_of("sendPhoto") == []  # nothing to scan
        card = h.last(USER)
        [[page_button], *_] = card["reply_markup"]["inline_keyboard"]
        assert page_button["url"] == sms.invoices[-1]["url"] and sms.invoices[-1]["amount"] == 25
        assert "Pay $25.00 on the payment page" in card["text"]

        deposit = await the_deposit(h)
        assert deposit.is_link and deposit.address is None and deposit.status is DepositStatus.PENDING
        assert (await h.app.reconciler.run_once(now=deposit.next_check_at + 1)).credited == 0  # "check": not yet
        sms.set_invoice_status(sms.invoices[-1]["url"], "paid")
        assert (await h.app.reconciler.run_once(now=deposit.next_check_at + 300)).credited == 1
        await h.deliver()
        assert await balance(h) == 2500
        assert "Paid" in api.messages[(USER, card["message_id"])]["text"]
        assert any("Payment received" in text for text in h.texts(USER))
    finally:
        await h.close()


async def test_only_an_exact_pay_id_match_counts(api: FakeBotAPI, tmp_path: Path, sms: FakeSMSOnline) -> None:
    h = await start(api, tmp_path, sms, {"page"})
    try:
        await to_confirm(h, "payment page")
        await h.tap(USER, "Create")
        deposit = await the_deposit(h)
        # Someone else's page invoice on the same SMSOnline account is paid: not ours.
        sms.invoices.append({"kind": "cryptomus", "amount": 25, "couponCode": None, "status": "paid",
                             "url": "https://pay.cryptomus.com/pay/00000000-0000-0000-0000-000000000000"})
        assert (await h.app.reconciler.run_once(now=deposit.next_check_at + 1)).credited == 0
        sms.set_invoice_status(sms.invoices[0]["url"], "cancel")
        await h.app.reconciler.run_once(now=deposit.next_check_at + 300)
        assert (await deposits.get(h.app.db.reader, deposit.id)).status is DepositStatus.CANCELLED
        assert await balance(h) == 0
    finally:
        await h.close()


async def test_a_card_payment_goes_to_the_operator(api: FakeBotAPI, tmp_path: Path, sms: FakeSMSOnline) -> None:
    h = await start(api, tmp_path, sms, {"card"})
    try:
        await to_confirm(h, "bank card", amount="40")
        await h.tap(USER, "Create")
        assert "confirmed by our staff" in h.last_text(USER)
        assert sms.invoices[-1]["kind"] == "pay4bit" and sms.invoices[-1]["amount"] == 40
        deposit = await the_deposit(h)
        sms.set_invoice_status(sms.invoices[-1]["url"], "paid")  # even if history says so: no way to tie it to us
        assert (await h.app.reconciler.run_once(now=deposit.next_check_at + 1)).credited == 0
        await h.deliver()
        [admin_line] = h.texts(ADMIN_CHAT_ID)
        assert f"Deposit #{deposit.id}" in admin_line and "$40.00" in admin_line and "by hand" in admin_line
        assert await balance(h) == 0
    finally:
        await h.close()


async def test_v2_accounts_get_the_v2_checkout_in_cents(api: FakeBotAPI, tmp_path: Path, sms: FakeSMSOnline) -> None:
    h = await start(api, tmp_path, sms, {"page"}, v2=True)
    try:
        await to_confirm(h, "payment page", amount="7")
        await h.tap(USER, "Create")
        assert sms.invoices[-1]["kind"] == "v2_crypto" and sms.invoices[-1]["amount"] == 700
        [request] = sms.requests_to("/cs/checkout/crypto")
        assert request.query["amount"] == "700"
    finally:
        await h.close()


async def test_gateway_coupons_go_only_where_they_are_taken(api: FakeBotAPI, tmp_path: Path,
                                                             sms: FakeSMSOnline) -> None:
    h = await start(api, tmp_path, sms, {"page", "card"})
    try:
        await to_confirm(h, "payment page", coupon="SMS10")
        assert "will be checked by the payment provider" in h.last_text(USER)
        await h.tap(USER, "Create")
        assert sms.invoices[-1]["couponCode"] == "SMS10"
        await to_confirm(h, "bank card", coupon="SMS10")  # Pay4bit takes no coupon code
        assert "I don't know this coupon" in h.last_text(USER)
    finally:
        await h.close()


async def test_disabled_methods_are_neither_shown_nor_accepted(api: FakeBotAPI, tmp_path: Path,
                                                               sms: FakeSMSOnline) -> None:
    h = await start(api, tmp_path, sms, {"page"})
    try:
        await h.send(USER, "/topup")
        flow = h.last(USER)
        assert not any("bank card" in label for label in h.buttons(flow))
        await h.press(USER, "tl:card", message_id=flow["message_id"])
        assert h.toasts()[-1] == "This menu is out of date."
        assert "How much" not in h.last_text(USER)
    finally:
        await h.close()
