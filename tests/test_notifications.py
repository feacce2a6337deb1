"""Typed notifications: every kind survives the outbox row and renders; rows from before typed payloads still arrive;
a card update retried late never shows an outdated status."""
from __future__ import annotations

import json
from decimal import Decimal

from handlers.i18n import Locales
from handlers.ui.notifications import NotificationRenderer
from services import notifications
from services.admin_reports import PairSum, Stats
from services.notifications import PAYLOADS, NotificationKind, Payload, from_json, to_json
from services.store import Deposit, DepositStatus, User
from services.store import outbox
from services.store.db import execute, fetch_one
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID, Harness

USER = 4343

DEPOSIT = Deposit(id=7, user_id=USER, chat_id=USER, gateway="cryptomus", order_id="o-7", status=DepositStatus.PAID,
                  coin="USDT", network="TRON", amount_cents=1000, quoted_cents=None, pay_amount=Decimal("10.000001"),
                  pay_currency="USDT", address="TXYZ", payment_url=None, expires_at=2_000_000_000, coupon_id=None,
                  gateway_coupon=None, credited_cents=1000, bonus_cents=50, txid="0xfeed", failure_reason=None,
                  message_chat_id=USER, message_id=11, check_failures=0, next_check_at=None, created_at=1_700_000_000,
                  paid_at=1_700_000_100)
ALICE = User(id=USER, username="alice", first_name="Alice", locale="ru", telegram_lang="en", balance_cents=1050,
             created_at=1_700_000_000)
SAMPLES: list[Payload] = [
    notifications.DepositPaid(DEPOSIT, ALICE, 1000, 50, 1050, bonus_lost=False),
    notifications.DepositExpired(DEPOSIT, ALICE),
    notifications.DepositCard(DEPOSIT, ALICE, 11),
    notifications.BalanceAdjusted(ALICE, -250, "refund of an order", 800),
    notifications.AdminDepositPaid(DEPOSIT, None, 1000, 50, txid="0xfeed", review=True, raw_status="paid_over",
                                   note="paid 12.00 USD"),
    notifications.AdminDepositExpired(DEPOSIT, ALICE),
    notifications.AdminDepositReview(DEPOSIT, "refund_paid"),
    notifications.AdminManualDeposit(DEPOSIT, ALICE),
    notifications.AdminDailySummary(1_700_000_000, Stats(3, 1, 1, 1, 0, 0, 1000, 50,
                                                         (PairSum("USDT", "TRON", 1, 1000, 50),))),
    notifications.AdminWebhookRejected("heleket", "bad_signature", "203.0.113.9", 12),
    notifications.AdminGatewayError("cryptomus", "401: wrong API key"),
    notifications.DepositInterrupted(DEPOSIT, ALICE, 12),
    notifications.BalanceCharged(ALICE, 200, "SMS number", 315),
    notifications.BalanceRefunded(ALICE, 200, "", 515),
    notifications.AdminTestMoney(5000, 2),
]


def test_every_kind_has_one_payload_that_survives_its_row_and_renders() -> None:
    assert set(PAYLOADS) == set(NotificationKind) == {p.kind for p in SAMPLES}
    renderer = NotificationRenderer(Locales("en"), sandbox=False)
    for payload in SAMPLES:
        row = json.loads(json.dumps(to_json(payload)))
        assert from_json(payload.kind, row) == payload
        message = renderer.render(payload)
        assert message.text and "{" not in message.text, payload.kind


def test_a_customer_reads_in_their_language_and_staff_in_the_default() -> None:
    renderer = NotificationRenderer(Locales("en"), sandbox=False)
    paid, adjusted, admin_paid = SAMPLES[0], SAMPLES[3], SAMPLES[4]
    assert renderer.translator(paid).locale == "ru" and renderer.translator(adjusted).locale == "ru"
    assert renderer.translator(admin_paid).locale == "en"
    assert "Оплата получена" in renderer.render(paid).text


async def _deposit_with_card(h: Harness) -> int:
    await h.send(USER, "/topup")
    await h.tap(USER, "BTC")
    await h.send(USER, "10")
    await h.tap(USER, "Create")
    return int(h.last(USER)["caption"].split("#")[1].split()[0])


async def test_rows_queued_before_typed_payloads_are_still_delivered(harness: Harness, api: FakeBotAPI) -> None:
    deposit_id = await _deposit_with_card(harness)
    card = harness.last(USER)
    async with harness.app.db.transaction() as tx:  # exactly as the code before typed payloads wrote them
        await execute(tx, "UPDATE deposits SET status = 'paid', credited_cents = 1000, bonus_cents = 0 WHERE id = ?",
                      (deposit_id,))
        legacy = [
            ("deposit_paid", USER, {"credited_cents": 1000, "bonus_cents": 0, "balance_cents": 1000,
                                    "amount_cents": 1000, "bonus_lost": False}),
            ("deposit_card", USER, {"message_id": card["message_id"]}),
            ("admin_deposit_paid", ADMIN_CHAT_ID, {"credited_cents": 1000, "bonus_cents": 0, "balance_cents": 1000,
                                                   "amount_cents": 1000, "bonus_lost": False, "txid": "0xold",
                                                   "review": False, "raw_status": "paid", "note": None}),
            ("admin_deposit_review", ADMIN_CHAT_ID, {"reason": "held by the gateway"}),
            ("balance_adjusted", USER, {"cents": 500, "reason": "goodwill", "balance_cents": 1500}),
            ("admin_webhook_rejected", ADMIN_CHAT_ID, {"source": "cryptomus", "reason": "bad_signature",
                                                       "ip": "198.51.100.7", "callback_id": 1}),
            ("admin_daily_summary", ADMIN_CHAT_ID, {"since": 0}),
        ]
        for n, (kind, chat_id, payload) in enumerate(legacy):
            await outbox.enqueue(tx, kind=kind, chat_id=chat_id, user_id=USER, deposit_id=deposit_id,
                                 dedupe_key=f"legacy:{n}", payload=payload)
    assert await harness.deliver() == len(legacy)
    user_texts, admin_texts = harness.texts(USER), harness.texts(ADMIN_CHAT_ID)
    assert any(f"Payment received for deposit #{deposit_id}" in text for text in user_texts)
    assert any("goodwill" in text for text in user_texts)
    assert "Paid" in api.messages[(USER, card["message_id"])]["caption"]
    assert any(f"Deposit #{deposit_id} paid" in text and "0xold" in text for text in admin_texts)
    assert any("held by the gateway" in text for text in admin_texts)
    assert any("198.51.100.7" in text for text in admin_texts)
    assert any("Daily summary" in text for text in admin_texts)


async def test_a_late_retry_never_puts_an_older_card_status_back(harness: Harness, api: FakeBotAPI) -> None:
    deposit_id = await _deposit_with_card(harness)
    card = harness.last(USER)
    await harness.app.settler.expire(deposit_id)
    api.fail_next("editMessageCaption", status=502)
    await harness.deliver()  # the "expired" edit of the card fails and waits for its retry
    await harness.app.topup.simulate_payment(USER, deposit_id)  # then the payment arrives after all
    await harness.deliver()
    async with harness.app.db.transaction() as tx:
        await execute(tx, "UPDATE notifications SET next_attempt_at = 0 WHERE status = 'pending'")
    await harness.deliver()
    assert "Paid" in api.messages[(USER, card["message_id"])]["caption"]
    row = await fetch_one(harness.app.db.reader, "SELECT status, last_error FROM notifications WHERE dedupe_key = ?",
                          (f"deposit:{deposit_id}:card:expired",))
    assert row["status"] == "failed" and "superseded" in row["last_error"]
