"""Per-user limits on deposit creation: open deposits and attempts per hour, exact under concurrency."""
from __future__ import annotations

import asyncio

from services.store import now_ts
from services.store.db import execute, fetch_value
from services.topup import TopupError, TopupProblem
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

USER = 7070


async def create(h: Harness, user: int = USER):
    return await h.app.topup.create_deposit(user_id=user, chat_id=user, coin="BTC", network="BTC",
                                            amount_cents=1000, coupon_code=None)


async def through_the_flow(h: Harness) -> None:
    await h.send(USER, "/topup")
    await h.tap(USER, "BTC")
    await h.send(USER, "10")
    await h.tap(USER, "Create")


async def test_open_deposits_are_capped_and_a_cancel_frees_a_place(api: FakeBotAPI, database_url: str) -> None:
    h = await Harness.start(api, database_url, MAX_OPEN_DEPOSITS="2")
    try:
        await h.send(USER, "/start")
        first = await create(h)
        await create(h)
        await h.send(USER, "/topup")  # said up front, before any step
        assert "You already have 2 deposits waiting for payment" in h.last_text(USER)
        assert await fetch_value(h.app.db.reader, "SELECT COUNT(*) FROM deposits") == 2  # nothing half-made
        await h.app.topup.cancel(USER, first.id)
        await through_the_flow(h)
        assert "Waiting for payment" in h.last_text(USER)
    finally:
        await h.close()


async def test_attempts_per_hour_are_capped_failed_ones_included(api: FakeBotAPI, database_url: str) -> None:
    h = await Harness.start(api, database_url, MAX_DEPOSITS_PER_HOUR="3", MAX_OPEN_DEPOSITS="10")
    try:
        await h.send(USER, "/start")
        deposit = await create(h)
        await h.app.topup.simulate_payment(USER, deposit.id)  # paid: no longer open, but it was an attempt
        await create(h)
        await create(h)
        try:
            await create(h)
        except TopupError as exc:
            assert exc.problem is TopupProblem.TOO_MANY_RECENT and exc.limit == 3
        else:
            raise AssertionError("a fourth deposit within the hour was created")
        await h.send(USER + 1, "/start")
        await create(h, USER + 1)  # another user is not affected
    finally:
        await h.close()


async def test_concurrent_taps_cannot_slip_past_the_limit(api: FakeBotAPI, database_url: str) -> None:
    h = await Harness.start(api, database_url, MAX_OPEN_DEPOSITS="3", MAX_DEPOSITS_PER_HOUR="100")
    try:
        await h.send(USER, "/start")
        results = await asyncio.gather(*(create(h) for _ in range(12)), return_exceptions=True)
        created = [r for r in results if not isinstance(r, Exception)]
        refused = [r for r in results if isinstance(r, TopupError) and r.problem is TopupProblem.TOO_MANY_OPEN]
        assert len(created) == 3 and len(refused) == 9
    finally:
        await h.close()


async def test_the_hourly_window_is_exactly_one_hour(api: FakeBotAPI, database_url: str) -> None:
    """Attempts count for 3600 s: one started 3,500 s ago still counts, one started 3,601 s ago no longer does."""
    h = await Harness.start(api, database_url, MAX_DEPOSITS_PER_HOUR="2", MAX_OPEN_DEPOSITS="10")
    try:
        await h.send(USER, "/start")
        first, second = await create(h), await create(h)

        async def started_ago(seconds: int) -> None:
            async with h.app.db.transaction() as tx:
                await execute(tx, "UPDATE deposits SET created_at = ? WHERE id IN (?, ?)",
                              (now_ts() - seconds, first.id, second.id))

        await started_ago(3500)
        await h.send(USER, "/topup")  # said when Top up is asked for, before any step
        assert "deposits in the last hour" in h.last_text(USER)
        await started_ago(3601)
        await through_the_flow(h)
        assert "Waiting for payment" in h.last_text(USER)
    finally:
        await h.close()
