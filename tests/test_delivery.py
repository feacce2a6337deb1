"""The notification outbox: delivered once, retried on 429/5xx, given up on a user who blocked the bot."""
from __future__ import annotations

import time

from services.store.db import execute, fetch_one
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import ADMIN_CHAT_ID, Harness

USER = 4242


async def _paid_deposit(h: Harness) -> int:
    await h.send(USER, "/start")
    deposit = await h.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                               amount_cents=1000, coupon_code=None)
    await h.app.topup.simulate_payment(USER, deposit.id)
    return deposit.id


async def _due_now(h: Harness) -> None:
    async with h.app.db.transaction() as tx:
        await execute(tx, "UPDATE notifications SET next_attempt_at = 0 WHERE status = 'pending'")


def _paid_messages(h: Harness) -> list[str]:
    return [text for text in h.texts(USER) if "Payment received" in text]


async def test_each_notification_is_delivered_once(harness: Harness) -> None:
    await _paid_deposit(harness)
    assert await harness.deliver() == 2
    assert await harness.deliver() == 0
    assert len(_paid_messages(harness)) == 1
    assert len(harness.texts(ADMIN_CHAT_ID)) == 1


async def test_429_is_waited_out_and_the_message_arrives_once(harness: Harness, api: FakeBotAPI) -> None:
    await _paid_deposit(harness)
    api.fail_next("sendMessage", status=429, retry_after=3, count=1)
    asked_at = int(time.time())
    mark = api.mark()
    await harness.deliver()
    row = await fetch_one(harness.app.db.reader,
                          "SELECT status, attempts, last_error, next_attempt_at FROM notifications "
                          "WHERE kind = 'deposit_paid'")
    assert row["status"] == "pending" and row["attempts"] == 1 and "retry after 3" in row["last_error"]
    assert row["next_attempt_at"] >= asked_at + 3  # retried no sooner than Telegram asked
    refused, after = [c for c in api.calls[mark:] if c.method == "sendMessage"][:2]
    assert refused.failed and not after.failed
    assert after.at - refused.at >= 2.9  # and nothing else was sent to Telegram in the meantime
    await _due_now(harness)
    await harness.deliver()
    assert len(_paid_messages(harness)) == 1


async def test_server_errors_are_retried(harness: Harness, api: FakeBotAPI) -> None:
    await _paid_deposit(harness)
    api.fail_next("sendMessage", status=502, count=2)
    for _ in range(3):
        await harness.deliver()
        await _due_now(harness)
    assert len(_paid_messages(harness)) == 1
    assert len(harness.texts(ADMIN_CHAT_ID)) == 1


async def test_a_user_who_blocked_the_bot_is_given_up_with_the_reason(harness: Harness, api: FakeBotAPI) -> None:
    await _paid_deposit(harness)
    api.fail_next("sendMessage", status=403, count=1)
    await harness.deliver()
    await _due_now(harness)
    await harness.deliver()
    row = await fetch_one(harness.app.db.reader,
                          "SELECT status, last_error FROM notifications WHERE kind = 'deposit_paid'")
    assert row["status"] == "failed" and "blocked" in row["last_error"]
    assert _paid_messages(harness) == []
    assert len(harness.texts(ADMIN_CHAT_ID)) == 1  # the admin line is unaffected


async def test_undelivered_notifications_survive_a_restart(api: FakeBotAPI, database_url: str) -> None:
    db_path = database_url
    first = await Harness.start(api, db_path)
    await _paid_deposit(first)
    await first.close()  # the process stops before delivering anything
    assert _paid_messages(first) == []
    second = await Harness.start(api, db_path)
    try:
        await second.deliver()
        assert len(_paid_messages(second)) == 1
    finally:
        await second.close()


async def test_the_deposit_card_follows_the_status(harness: Harness, api: FakeBotAPI) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "BTC")
    await harness.send(USER, "10")
    await harness.tap(USER, "Create")
    card = harness.last(USER)
    assert "Waiting for payment" in card["caption"]
    deposit_id = int(card["caption"].split("#")[1].split()[0])
    await harness.app.settler.expire(deposit_id)
    await harness.deliver()
    assert "Expired" in api.messages[(USER, card["message_id"])]["caption"]
    assert "Do not send any funds" in api.messages[(USER, card["message_id"])]["caption"]
    assert any("has expired" in text for text in harness.texts(USER))


async def test_admin_events_can_be_turned_off(api: FakeBotAPI, database_url: str) -> None:
    h = await Harness.start(api, database_url, ADMIN_EVENTS="expired,review")
    try:
        deposit_id = await _paid_deposit(h)
        other = await h.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="BTC", network="BTC",
                                                 amount_cents=1000, coupon_code=None)
        await h.app.settler.expire(other.id)
        await h.deliver()
        [line] = h.texts(ADMIN_CHAT_ID)  # the expiry; the paid line was turned off
        assert f"Deposit #{other.id} expired unpaid" in line and f"#{deposit_id}" not in line
        assert len(_paid_messages(h)) == 1  # users' messages are never affected
        row = await fetch_one(h.app.db.reader, "SELECT status, last_error FROM notifications "
                                               "WHERE kind = 'admin_deposit_paid'")
        assert row["status"] == "failed" and "ADMIN_EVENTS" in row["last_error"]
    finally:
        await h.close()
