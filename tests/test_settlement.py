"""Settlement: credited exactly once, whatever reports the payment and however often."""
from __future__ import annotations

import asyncio
from dataclasses import replace
from decimal import Decimal
from pathlib import Path

import pytest

from services.coupons import CouponError, CouponProblem
from services.gateways.base import PaymentState, PaymentUpdate
from services.gateways.sandbox import SandboxGateway
from services.matrix import Matrix
from services.money import AmountLimits
from services.reconciler import Reconciler
from services.settlement import Outcome, Settler
from services.store import CouponKind, Database, DepositStatus
from services.store import coupons, deposits, users
from services.store.db import fetch_all, fetch_value, integrity_errors
from services.topup import TopupService

ADMIN = -100


class Services:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.gateway = SandboxGateway()
        self.settler = Settler(db, admin_chat_id=ADMIN)
        self.topup = TopupService(db, self.gateway, Matrix(self.gateway.pairs), self.settler,
                                  AmountLimits(100, 1_000_000), admin_chat_id=ADMIN)
        self.reconciler = Reconciler(db, self.gateway, self.settler, interval_seconds=60)

    async def user(self, user_id: int) -> None:
        async with self.db.transaction() as tx:
            await users.upsert(tx, user_id, None, f"user{user_id}", "en")

    async def balance(self, user_id: int) -> int:
        user = await users.get(self.db.reader, user_id)
        assert user is not None
        return user.balance_cents

    def paid(self, order_id: str, paid_cents: int | None = None, state: PaymentState = PaymentState.PAID,
             source: str = "poll") -> PaymentUpdate:
        return PaymentUpdate(gateway="sandbox", order_id=order_id, state=state, paid_cents=paid_cents, source=source)


@pytest.fixture
async def s(db: Database) -> Services:
    services = Services(db)
    await services.user(1)
    await services.user(2)
    return services


async def test_fifty_concurrent_confirmations_credit_once(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    update = s.paid(deposit.order_id)
    results = await asyncio.gather(*(s.settler.settle_payment(update) for _ in range(50)),
                                   *(s.topup.simulate_payment(1, deposit.id) for _ in range(5)))
    outcomes = [r.outcome for r in results]
    assert outcomes.count(Outcome.CREDITED) == 1
    assert outcomes.count(Outcome.ALREADY_CREDITED) == 54
    assert await s.balance(1) == 2500
    assert await fetch_value(s.db.reader, "SELECT COUNT(*) FROM ledger WHERE deposit_id = ?", (deposit.id,)) == 1
    assert await users.balance_mismatches(s.db.reader) == []
    # one user message, one card edit... (no card message here), one admin line: never duplicated
    kinds = [r["kind"] for r in await fetch_all(s.db.reader, "SELECT kind FROM notifications")]
    assert sorted(kinds) == ["admin_deposit_paid", "deposit_paid"]


async def test_single_credit_holds_across_processes(tmp_path: Path, s: Services) -> None:
    """Two Database objects on one file (two bot processes): the UNIQUE key still allows one credit."""
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="BTC", network="BTC", amount_cents=1000,
                                           coupon_code=None)
    other_db = Database(s.db.url)
    await other_db.connect()
    try:
        other = Settler(other_db, admin_chat_id=ADMIN)
        results = await asyncio.gather(*(settler.settle_payment(s.paid(deposit.order_id))
                                         for _ in range(20) for settler in (s.settler, other)))
    finally:
        await other_db.close()
    assert [r.outcome for r in results].count(Outcome.CREDITED) == 1
    assert await s.balance(1) == 1000


async def test_unknown_order_credits_nothing(s: Services) -> None:
    result = await s.settler.settle_payment(s.paid("no-such-order", 10_000))
    assert result.outcome is Outcome.UNKNOWN_ORDER
    assert await fetch_value(s.db.reader, "SELECT COUNT(*) FROM ledger") == 0


async def test_paid_amount_from_the_gateway_is_what_gets_credited(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    update = replace(s.paid(deposit.order_id, paid_cents=2600), received_amount=Decimal("26"))
    await s.settler.settle_payment(update)
    assert await s.balance(1) == 2600
    review = await fetch_value(s.db.reader, "SELECT payload FROM notifications WHERE kind = 'admin_deposit_paid'")
    assert '"review": true' in review  # over or under payment is flagged for the operator


@pytest.mark.parametrize("state", [PaymentState.REFUNDED, PaymentState.HELD, PaymentState.PENDING])
async def test_states_that_never_credit(s: Services, state: PaymentState) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    await s.settler.settle_payment(s.paid(deposit.order_id, 2500, state=state))
    assert await s.balance(1) == 0
    assert (await deposits.get(s.db.reader, deposit.id)).status is DepositStatus.PENDING


async def test_underpaid_without_an_amount_is_flagged_not_credited(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    result = await s.settler.settle_payment(s.paid(deposit.order_id, None, state=PaymentState.UNDERPAID))
    assert result.outcome is Outcome.FLAGGED and await s.balance(1) == 0


async def test_gateway_failure_closes_the_deposit_and_a_later_payment_still_credits(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    closed = await s.settler.settle_payment(s.paid(deposit.order_id, state=PaymentState.CANCELLED))
    assert closed.outcome is Outcome.CLOSED and closed.deposit.status is DepositStatus.CANCELLED
    credited = await s.settler.settle_payment(s.paid(deposit.order_id))
    assert credited.outcome is Outcome.CREDITED and await s.balance(1) == 2500


async def test_paid_deposit_is_never_closed_by_a_late_failure(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    await s.settler.settle_payment(s.paid(deposit.order_id))
    result = await s.settler.settle_payment(s.paid(deposit.order_id, state=PaymentState.FAILED))
    assert result.outcome is Outcome.UNCHANGED
    assert (await deposits.get(s.db.reader, deposit.id)).status is DepositStatus.PAID


async def test_expiry_then_late_payment(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    report = await s.reconciler.run_once(now=deposit.expires_at + 1)
    assert report.expired == 1
    assert (await deposits.get(s.db.reader, deposit.id)).status is DepositStatus.EXPIRED
    assert await fetch_value(s.db.reader, "SELECT COUNT(*) FROM notifications WHERE kind = 'deposit_expired'") == 1
    await s.settler.settle_payment(s.paid(deposit.order_id))
    assert (await deposits.get(s.db.reader, deposit.id)).status is DepositStatus.PAID
    assert await s.balance(1) == 2500


# --- coupons ---

async def _coupon(s: Services, code: str, **kw: object) -> int:
    async with s.db.transaction() as tx:
        coupon_id = await coupons.create(tx, code=code, **kw)
    assert coupon_id is not None
    return coupon_id


async def test_coupon_bonus_is_credited_once_with_the_deposit(s: Services) -> None:
    await _coupon(s, "WELCOME10", kind=CouponKind.PERCENT, value=10)
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code="welcome10")
    results = await asyncio.gather(*(s.settler.settle_payment(s.paid(deposit.order_id)) for _ in range(10)))
    assert sum(r.bonus_cents for r in results) == 250
    assert await s.balance(1) == 2750
    with pytest.raises(CouponError) as info:  # once per user
        await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                     coupon_code="WELCOME10")
    assert info.value.problem is CouponProblem.ALREADY_USED


async def test_last_use_of_a_coupon_goes_to_exactly_one_user(s: Services) -> None:
    await _coupon(s, "ONLYONE", kind=CouponKind.FIXED, value=500, max_uses=1)
    for user_id in range(10, 30):
        await s.user(user_id)

    async def attempt(user_id: int) -> bool:
        try:
            await s.topup.create_deposit(user_id=user_id, chat_id=user_id, coin="BTC", network="BTC",
                                         amount_cents=1000, coupon_code="ONLYONE")
            return True
        except CouponError:
            return False

    won = await asyncio.gather(*(attempt(u) for u in range(10, 30)))
    assert won.count(True) == 1
    assert await fetch_value(s.db.reader, "SELECT used_count FROM coupons WHERE code = 'ONLYONE'") == 1
    # refused attempts left nothing that looks created
    assert await fetch_value(s.db.reader, "SELECT COUNT(*) FROM deposits") == 1


async def test_expired_deposit_returns_its_coupon(s: Services) -> None:
    await _coupon(s, "ONCE", kind=CouponKind.FIXED, value=300, max_uses=1)
    first = await s.topup.create_deposit(user_id=1, chat_id=1, coin="BTC", network="BTC", amount_cents=1000,
                                         coupon_code="ONCE")
    with pytest.raises(CouponError):
        await s.topup.choose_coupon(user_id=2, code="ONCE", amount_cents=1000)
    await s.reconciler.run_once(now=first.expires_at + 1)
    choice = await s.topup.choose_coupon(user_id=2, code="ONCE", amount_cents=1000)
    assert choice.bonus_cents == 300


async def test_late_payment_after_the_coupon_went_to_someone_else_credits_without_bonus(s: Services) -> None:
    await _coupon(s, "ONCE", kind=CouponKind.FIXED, value=300, max_uses=1)
    first = await s.topup.create_deposit(user_id=1, chat_id=1, coin="BTC", network="BTC", amount_cents=1000,
                                         coupon_code="ONCE")
    await s.reconciler.run_once(now=first.expires_at + 1)
    await s.topup.create_deposit(user_id=2, chat_id=2, coin="BTC", network="BTC", amount_cents=1000,
                                 coupon_code="ONCE")
    result = await s.settler.settle_payment(s.paid(first.order_id))
    assert result.outcome is Outcome.CREDITED and result.bonus_cents == 0
    assert await s.balance(1) == 1000
    payload = await fetch_value(s.db.reader, "SELECT payload FROM notifications WHERE kind = 'deposit_paid'")
    assert '"bonus_lost": true' in payload  # the user is told why there is no bonus


@pytest.mark.parametrize("setup, problem", [
    ({"code": "OLD", "kind": CouponKind.PERCENT, "value": 10, "expires_at": 1}, CouponProblem.EXPIRED),
    ({"code": "BIG", "kind": CouponKind.PERCENT, "value": 10, "min_amount_cents": 5000}, CouponProblem.BELOW_MIN),
])
async def test_coupon_problems(s: Services, setup: dict[str, object], problem: CouponProblem) -> None:
    await _coupon(s, **setup)
    with pytest.raises(CouponError) as info:
        await s.topup.choose_coupon(user_id=1, code=str(setup["code"]), amount_cents=1000)
    assert info.value.problem is problem


async def test_unknown_code_on_a_gateway_without_codes_is_not_found(s: Services) -> None:
    with pytest.raises(CouponError) as info:
        await s.topup.choose_coupon(user_id=1, code="NOPE", amount_cents=1000)
    assert info.value.problem is CouponProblem.NOT_FOUND


async def test_stuck_creation_is_cleaned_up_and_its_coupon_returned(s: Services) -> None:
    """A crash during the gateway call leaves a 'creating' row; the reconciler fails it and frees the coupon."""
    coupon_id = await _coupon(s, "HOLD", kind=CouponKind.FIXED, value=100, max_uses=1)
    async with s.db.transaction() as tx:
        deposit_id = await deposits.reserve(tx, user_id=1, chat_id=1, gateway="sandbox", coin="BTC", network="BTC",
                                            amount_cents=1000, coupon_id=coupon_id, gateway_coupon=None)
        assert await coupons.hold(tx, coupon_id, 1, deposit_id) and await coupons.take_use(tx, coupon_id)
    report = await s.reconciler.run_once(now=10**10)
    assert report.abandoned == 1
    assert (await deposits.get(s.db.reader, deposit_id)).status is DepositStatus.FAILED
    assert (await s.topup.choose_coupon(user_id=1, code="HOLD", amount_cents=1000)).bonus_cents == 100


async def test_a_payment_in_another_coin_is_flagged_not_credited(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    wrong = PaymentUpdate(gateway="sandbox", order_id=deposit.order_id, state=PaymentState.PAID, currency="TRX")
    result = await s.settler.settle_payment(wrong)
    assert result.outcome is Outcome.FLAGGED and await s.balance(1) == 0
    reason = await fetch_value(s.db.reader, "SELECT payload FROM notifications WHERE kind = 'admin_deposit_review'")
    assert "paid in TRX" in reason
    right = PaymentUpdate(gateway="sandbox", order_id=deposit.order_id, state=PaymentState.PAID, currency="usdt")
    assert (await s.settler.settle_payment(right)).outcome is Outcome.CREDITED


async def test_an_overpayment_nothing_proves_is_held_not_credited(s: Services) -> None:
    deposit = await s.topup.create_deposit(user_id=1, chat_id=1, coin="USDT", network="TRON", amount_cents=2500,
                                           coupon_code=None)
    result = await s.settler.settle_payment(s.paid(deposit.order_id, paid_cents=2600))
    assert result.outcome is Outcome.FLAGGED and await s.balance(1) == 0


async def test_a_coupon_hold_released_twice_gives_back_one_use(s: Services) -> None:
    """Expired (released), then cancelled at the gateway (released again): one use comes back, not two, so
    `max_uses` still holds for the others."""
    coupon_id = await _coupon(s, "TWO", kind=CouponKind.FIXED, value=100, max_uses=2)
    await s.user(3)
    first = await s.topup.create_deposit(user_id=1, chat_id=1, coin="BTC", network="BTC", amount_cents=1000,
                                         coupon_code="TWO")
    await s.topup.create_deposit(user_id=2, chat_id=2, coin="BTC", network="BTC", amount_cents=1000,
                                 coupon_code="TWO")
    assert await s.settler.expire(first.id)
    closed = await s.settler.settle_payment(s.paid(first.order_id, state=PaymentState.CANCELLED))
    assert closed.outcome is Outcome.CLOSED
    async with s.db.transaction() as tx:
        assert await coupons.release(tx, first.id) is False
    assert await fetch_value(s.db.reader, "SELECT used_count FROM coupons WHERE id = ?", (coupon_id,)) == 1
    await s.topup.create_deposit(user_id=3, chat_id=3, coin="BTC", network="BTC", amount_cents=1000,
                                 coupon_code="TWO")
    await s.user(4)
    with pytest.raises(CouponError) as info:
        await s.topup.create_deposit(user_id=4, chat_id=4, coin="BTC", network="BTC", amount_cents=1000,
                                     coupon_code="TWO")
    assert info.value.problem is CouponProblem.USED_UP


async def test_once_per_user_is_a_database_constraint(s: Services) -> None:
    """Not only the code: a second hold of one coupon by one user is refused by the schema itself."""
    coupon_id = await _coupon(s, "ONCEPER", kind=CouponKind.FIXED, value=100)
    first = await s.topup.create_deposit(user_id=1, chat_id=1, coin="BTC", network="BTC", amount_cents=1000,
                                         coupon_code="ONCEPER")
    second = await s.topup.create_deposit(user_id=1, chat_id=1, coin="BTC", network="BTC", amount_cents=1000,
                                          coupon_code=None)
    with pytest.raises(integrity_errors()):
        async with s.db.transaction() as tx:
            await tx.execute("INSERT INTO coupon_holds (coupon_id, user_id, deposit_id, state, created_at) "
                             "VALUES (?, 1, ?, 'held', 0)", (coupon_id, second.id))
    assert first.coupon_id == coupon_id
