"""The daily summary reaches the admin chat once a day at the configured hour, with the day's figures."""
from __future__ import annotations

from datetime import datetime, timezone

from services.summary import queue_daily_summary
from tests.harness import ADMIN_CHAT_ID, Harness

USER = 4343


async def test_one_summary_a_day_at_the_hour_with_the_figures(harness: Harness) -> None:
    await harness.send(USER, "/start")
    deposit = await harness.app.topup.create_deposit(user_id=USER, chat_id=USER, coin="USDT", network="TRON",
                                                     amount_cents=1250, coupon_code=None)
    await harness.app.topup.simulate_payment(USER, deposit.id)
    now = datetime.now(timezone.utc)
    db = harness.app.db
    assert not await queue_daily_summary(db, admin_chat_id=ADMIN_CHAT_ID, hour=(now.hour + 1) % 24, now=now)
    # The harness runs the sandbox, whose money the summary counts while the sandbox runs.
    assert await queue_daily_summary(db, admin_chat_id=ADMIN_CHAT_ID, hour=now.hour, now=now, include_test=True)
    assert not await queue_daily_summary(db, admin_chat_id=ADMIN_CHAT_ID, hour=now.hour, now=now,
                                         include_test=True)  # a restart
    await harness.deliver()
    [summary] = [text for text in harness.texts(ADMIN_CHAT_ID) if "Daily summary" in text]
    assert "$12.50" in summary and "USDT" in summary
