"""Races that SQLite's single writer hid and PostgreSQL's READ COMMITTED exposes: each runs real concurrent
transactions on separate pooled connections, and each failed before its fix (named in the test).

The per-user deposit limits and the payout daily cap are proven by the same tests on both engines:
tests/test_limits.py::test_concurrent_taps_cannot_slip_past_the_limit and
tests/test_payouts.py::test_concurrent_confirmations_cannot_both_fit_under_the_daily_cap.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest

from services.admin import Actor, AdminError, AdminProblem, AdminService
from services.settlement import Outcome
from services.store import CouponKind, Database, DepositStatus, LedgerKind
from services.store import coupons, deposits, ledger, users
from services.store.db import fetch_value, retry_on_deadlock
from tests.test_settlement import Services

ADMIN = Actor(501, "Ops")


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[Database]:
    db = Database(postgres_url)
    await db.connect()
    yield db
    await db.close()


@pytest.fixture
async def s(pg: Database) -> Services:
    services = Services(pg)
    for user_id in (1, 2):
        await services.user(user_id)
    return services


async def _credit(db: Database, user_id: int, cents: int) -> None:
    async with db.transaction() as tx:
        await ledger.append(tx, user_id=user_id, amount_cents=cents, kind=LedgerKind.ADJUSTMENT,
                            idempotency_key=f"seed:{user_id}:{cents}")


async def test_two_admins_debiting_at_once_never_go_below_zero(s: Services) -> None:
    """Before users.lock in AdminService.adjust_balance, both debits read a balance of $10 and both went through."""
    admin = AdminService(s.db, s.settler, allow_negative_balance=False, confirm_seconds=60)
    for round_ in range(10):
        user_id = 100 + round_
        await s.user(user_id)
        await _credit(s.db, user_id, 1000)
        pendings = [await admin.pending(await admin.ask(ADMIN, "debit", {"user_id": user_id, "cents": -700,
                                                                         "reason": "refund"}), ADMIN)
                    for _ in range(2)]
        results = await asyncio.gather(*(admin.adjust_balance(ADMIN, p) for p in pendings), return_exceptions=True)
        refused = [r for r in results if isinstance(r, AdminError) and r.problem is AdminProblem.BELOW_ZERO]
        assert len(refused) == 1, results
        assert await s.balance(user_id) == 300
    assert await users.balance_mismatches(s.db.reader) == []


async def test_a_coupon_hold_released_twice_at_once_gives_back_one_use(s: Services) -> None:
    """Before coupons.release deleted the hold with RETURNING, both releases saw the hold and decremented twice."""
    async with s.db.transaction() as tx:
        coupon_id = await coupons.create(tx, code="TWICE", kind=CouponKind.PERCENT, value=10, max_uses=5)
    assert coupon_id is not None
    # Someone else holds it too: a second decrement would show (the UPDATE never goes below zero on its own).
    await s.topup.create_deposit(user_id=2, chat_id=2, coin="USDT", network="TRON", amount_cents=1000,
                                 coupon_code="TWICE")
    for round_ in range(10):
        deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON",
                                               amount_cents=1000, coupon_code="TWICE")
        assert (await coupons.get(s.db.reader, coupon_id)).used_count == 2, round_

        async def release(deposit_id: int) -> bool:
            async with s.db.transaction() as tx:
                return await coupons.release(tx, deposit_id)

        results = await asyncio.gather(*(release(deposit.id) for _ in range(4)))
        assert results.count(True) == 1
        assert (await coupons.get(s.db.reader, coupon_id)).used_count == 1
        await s.settler.cancel(deposit.id)


async def test_settle_expire_and_cancel_on_one_deposit_end_in_one_state(s: Services,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """Settlement locked user then coupon and wanted the deposit; expire/cancel locked the deposit and wanted the
    coupon: opposite orders, a deadlock (40P01). Now each locks the deposit first (deposits.lock)."""
    async with s.db.transaction() as tx:
        await coupons.create(tx, code="RACE", kind=CouponKind.FIXED, value=100)
    caplog.set_level(logging.ERROR, "services.store.db")
    for round_ in range(25):
        user_id = 10 + round_
        await s.user(user_id)
        deposit = await s.topup.create_deposit(user_id=user_id, chat_id=user_id, coin="USDT", network="TRON",
                                               amount_cents=1000, coupon_code="RACE")
        results = await asyncio.gather(
            s.settler.settle_payment(s.paid(deposit.order_id)), s.settler.expire(deposit.id),
            s.settler.cancel(deposit.id), s.settler.settle_payment(s.paid(deposit.order_id)),
            return_exceptions=True)
        assert not [r for r in results if isinstance(r, BaseException)], results
        assert [getattr(r, "outcome", None) for r in results].count(Outcome.CREDITED) == 1
        final = await deposits.get(s.db.reader, deposit.id)
        assert final.status is DepositStatus.PAID and final.bonus_cents == 100
        assert await s.balance(user_id) == 1100
    assert "40P01" not in caplog.text
    assert await users.balance_mismatches(s.db.reader) == []
    coupon = await coupons.by_code(s.db.reader, "RACE")
    redeemed = await fetch_value(s.db.reader, "SELECT COUNT(*) FROM coupon_holds WHERE state = 'redeemed'")
    assert coupon.used_count == redeemed == 25


async def test_a_deadlock_is_logged_apart_and_the_transaction_run_again(pg: Database,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    """Two transactions taking two rows in opposite orders: PostgreSQL aborts one (40P01); it is logged as such and
    run again, and both end up done."""
    for user_id in (1, 2):
        async with pg.transaction() as tx:
            await users.upsert(tx, user_id, None, "u", None)
    both_hold_one = asyncio.Barrier(2)
    runs: list[int] = []

    @retry_on_deadlock
    async def lock_both(first: int, second: int) -> None:
        runs.append(first)
        async with pg.transaction() as tx:
            await users.lock(tx, first)
            if len(runs) <= 2:
                await both_hold_one.wait()
            await users.lock(tx, second)

    caplog.set_level(logging.ERROR, "services.store.db")
    await asyncio.wait_for(asyncio.gather(lock_both(1, 2), lock_both(2, 1)), 30)
    assert len(runs) == 3  # one of the two ran again
    assert "deadlock (SQLSTATE 40P01) in" in caplog.text
