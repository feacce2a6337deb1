"""The SMSOnline gateway, top-up service, settler and reconciler wired together on a real SQLite file.

The gateway talks real HTTP to FakeSMSOnline; every assertion is on what the user or operator would see:
the balance, the ledger, the deposit's status and the notifications queued for delivery.
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

import services.alerts as alerts_module
from services.coupons import CouponError, CouponProblem
from services.gateways.base import PaymentState, PaymentUpdate
from services.gateways.smsonline import SMSOnlineGateway
from services.matrix import Matrix
from services.money import AmountLimits
from services.reconciler import LATE_PAYMENT_GRACE_SECONDS, Reconciler, next_check_delay
from services.settlement import Outcome, Settler
from services.store import CouponKind, Database, Deposit, DepositStatus, now_ts
from services.store import coupons as coupon_repo
from services.store import deposits, users
from services.store.db import fetch_all, fetch_value
from services.alerts import ALERT_WINDOW_SECONDS
from services.topup import TopupError, TopupProblem, TopupService
from tests.fakes.smsonline import FakeSMSOnline

SMS_USER = "operator-1"
KEY = "settle-api-key-77c2"
ADMIN = -100
ALICE = 501


@dataclass
class Services:
    db: Database
    gateway: SMSOnlineGateway
    settler: Settler
    topup: TopupService
    reconciler: Reconciler

    async def close(self) -> None:
        await self.gateway.close()


def wire(db: Database, base_url: str, *, api_key: str = KEY) -> Services:
    gateway = SMSOnlineGateway(base_url, SMS_USER, api_key, timeout_seconds=2)
    settler = Settler(db, admin_chat_id=ADMIN)
    topup = TopupService(db, gateway, Matrix(gateway.pairs), settler, AmountLimits(100, 1_000_000),
                         admin_chat_id=ADMIN)
    reconciler = Reconciler(db, gateway, settler, interval_seconds=1, admin_chat_id=ADMIN)
    return Services(db, gateway, settler, topup, reconciler)


async def add_user(db: Database, user_id: int = ALICE) -> None:
    async with db.transaction() as tx:
        await users.upsert(tx, user_id, "alice", "Alice", "en")


@pytest.fixture
async def fake():
    async with FakeSMSOnline(user_id=SMS_USER, api_key=KEY, coupons={"SAVE10": {"percentage": 10}}) as server:
        yield server


@pytest.fixture
async def svc(db, fake):
    await add_user(db)
    services = wire(db, fake.base_url)
    yield services
    await services.close()


async def create(svc: Services, amount_cents: int = 515, *, coin: str = "USDT", network: str = "TRON",
                 coupon: str | None = None) -> Deposit:
    return await svc.topup.create_deposit(user_id=ALICE, chat_id=ALICE, coin=coin, network=network,
                                          amount_cents=amount_cents, coupon_code=coupon)


async def balance(db: Database, user_id: int = ALICE) -> int:
    user = await users.get(db.reader, user_id)
    assert user is not None
    return user.balance_cents


async def ledger_rows(db: Database, deposit_id: int) -> list[tuple[str, int]]:
    rows = await fetch_all(db.reader, "SELECT kind, amount_cents FROM ledger WHERE deposit_id = ? ORDER BY id",
                           (deposit_id,))
    return [(r["kind"], r["amount_cents"]) for r in rows]


async def notifications(db: Database, kind: str | None = None) -> list[dict]:
    sql = "SELECT kind, chat_id, user_id, deposit_id, payload FROM notifications"
    rows = await fetch_all(db.reader, sql + (" WHERE kind = ?" if kind else "") + " ORDER BY id",
                           (kind,) if kind else ())
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def deposit(db: Database, deposit_id: int) -> Deposit:
    found = await deposits.get(db.reader, deposit_id)
    assert found is not None
    return found


def due(d: Deposit) -> int:
    """A `now` at which the reconciler polls this deposit, well before it expires."""
    assert d.next_check_at is not None and d.expires_at is not None
    assert d.next_check_at + 5 < d.expires_at
    return d.next_check_at + 5


async def assert_ledger_consistent(db: Database) -> None:
    assert await users.balance_mismatches(db.reader) == []


# --- the normal path ------------------------------------------------------------------------------------------------

async def test_paid_deposit_is_credited_once_by_the_reconciler(svc, fake, db):
    d = await create(svc)
    assert d.status is DepositStatus.PENDING
    assert d.order_id == fake.last_order_id()
    assert d.address == fake.deposits[d.order_id]["to_address"]

    # Not paid yet: a pass polls, credits nothing and keeps the deposit open.
    report = await svc.reconciler.run_once(now=due(d))
    assert (report.checked, report.credited) == (1, 0)
    assert await balance(db) == 0
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING

    fake.set_status(d.order_id, "paid")
    report = await svc.reconciler.run_once(now=due(d) + 2)
    assert report.credited == 1
    assert await balance(db) == 515
    assert await ledger_rows(db, d.id) == [("deposit", 515)]
    await assert_ledger_consistent(db)
    paid = await deposit(db, d.id)
    assert paid.status is DepositStatus.PAID
    assert paid.credited_cents == 515

    # Asked again, by every path: nothing more.
    again = await svc.reconciler.run_once(now=due(d) + 60)
    assert again.credited == 0
    check = await svc.topup.check_status(ALICE, d.id)
    assert check.deposit.status is DepositStatus.PAID
    replay = await svc.settler.settle_payment(PaymentUpdate("smsonline", d.order_id, PaymentState.PAID,
                                                            paid_cents=515, source="webhook"))
    assert replay.outcome is Outcome.ALREADY_CREDITED
    assert await balance(db) == 515
    assert await ledger_rows(db, d.id) == [("deposit", 515)]
    await assert_ledger_consistent(db)

    [user_note] = await notifications(db, "deposit_paid")
    assert user_note["chat_id"] == ALICE
    assert user_note["payload"]["credited_cents"] == 515
    assert user_note["payload"]["balance_cents"] == 515
    [admin_note] = await notifications(db, "admin_deposit_paid")
    assert admin_note["chat_id"] == ADMIN
    assert admin_note["payload"]["review"] is False


async def test_manual_check_credits_and_the_reconciler_then_does_not(svc, fake, db):
    d = await create(svc, 1000, coin="USDT", network="BSC")
    fake.set_status(d.order_id, "paid_over")
    check = await svc.topup.check_status(ALICE, d.id)
    assert check.settlement is not None and check.settlement.outcome is Outcome.CREDITED
    assert check.deposit.status is DepositStatus.PAID
    report = await svc.reconciler.run_once(now=due(d))
    assert report.checked == 0 and report.credited == 0
    assert await balance(db) == 1000
    assert len(await ledger_rows(db, d.id)) == 1


async def test_concurrent_reports_of_one_payment_credit_once(svc, fake, db):
    d = await create(svc)
    fake.set_status(d.order_id, "paid")
    update = PaymentUpdate("smsonline", d.order_id, PaymentState.PAID, paid_cents=515, source="webhook")

    results = await asyncio.gather(
        *(svc.settler.settle_payment(update) for _ in range(50)),
        *(svc.reconciler.run_once(now=due(d)) for _ in range(10)),
    )
    settlements, reports = results[:50], results[50:]
    credits = sum(s.outcome is Outcome.CREDITED for s in settlements) + sum(r.credited for r in reports)
    assert credits == 1
    assert all(s.outcome in (Outcome.CREDITED, Outcome.ALREADY_CREDITED) for s in settlements)
    assert await balance(db) == 515
    assert await ledger_rows(db, d.id) == [("deposit", 515)]
    await assert_ledger_consistent(db)
    assert len(await notifications(db, "deposit_paid")) == 1
    assert len(await notifications(db, "admin_deposit_paid")) == 1


async def test_two_users_paying_at_once_are_each_credited_their_own_amount(svc, fake, db):
    bob = 502
    await add_user(db, bob)
    a = await create(svc, 515)
    b = await svc.topup.create_deposit(user_id=bob, chat_id=bob, coin="BTC", network="BTC", amount_cents=2000,
                                       coupon_code=None)
    fake.set_status(a.order_id, "paid")
    fake.set_status(b.order_id, "paid")
    await asyncio.gather(*(svc.reconciler.run_once(now=due(a) + 5) for _ in range(5)))
    assert await balance(db, ALICE) == 515
    assert await balance(db, bob) == 2000
    await assert_ledger_consistent(db)


# --- the gateway says no ------------------------------------------------------------------------------------------

async def test_bad_credentials_tell_the_user_little_and_the_operator_once(db, fake, monkeypatch):
    await add_user(db)
    svc = wire(db, fake.base_url, api_key="not-the-key-4410")
    clock = [1_800_000_000 - 1_800_000_000 % ALERT_WINDOW_SECONDS + 5]  # start of an alert window
    monkeypatch.setattr(alerts_module, "now_ts", lambda: clock[0])
    try:
        with pytest.raises(TopupError) as info:
            await create(svc)
        assert info.value.problem is TopupProblem.TEMPORARILY_UNAVAILABLE

        rows = await fetch_all(db.reader, "SELECT status, order_id, address FROM deposits")
        assert [tuple(r) for r in rows] == [("failed", None, None)]
        assert await deposits.for_user(db.reader, ALICE, limit=10, offset=0) == []  # nothing in the history

        [alert] = await notifications(db, "admin_gateway_error")
        assert alert["chat_id"] == ADMIN
        detail = alert["payload"]["detail"]
        assert "user verification failed" in detail and "SMSONLINE_API_KEY" in detail
        assert "not-the-key-4410" not in json.dumps(alert)

        clock[0] += 60  # a second attempt in the same window: no second alert
        with pytest.raises(TopupError):
            await create(svc)
        assert len(await notifications(db, "admin_gateway_error")) == 1
        assert await fetch_value(db.reader, "SELECT COUNT(*) FROM deposits WHERE status = 'failed'") == 2

        clock[0] += ALERT_WINDOW_SECONDS  # still broken later: the operator is reminded
        with pytest.raises(TopupError):
            await create(svc)
        assert len(await notifications(db, "admin_gateway_error")) == 2
        # Nothing else was queued: no user message for a deposit that never existed.
        assert {n["kind"] for n in await notifications(db)} == {"admin_gateway_error"}
        assert await balance(db) == 0
    finally:
        await svc.close()


async def test_temporary_outage_fails_the_attempt_without_alerting(svc, fake, db):
    fake.fail_next("/cryptomus/direct/", status=502, body="Bad Gateway")
    with pytest.raises(TopupError) as info:
        await create(svc)
    assert info.value.problem is TopupProblem.TEMPORARILY_UNAVAILABLE
    assert await notifications(db) == []
    assert await fetch_value(db.reader, "SELECT status FROM deposits") == "failed"
    # The next attempt works.
    d = await create(svc)
    assert d.status is DepositStatus.PENDING


async def test_refused_pair_is_reported_as_unavailable_pair(svc, fake, db):
    fake.fail_next("/cryptomus/direct/", status=400, body='{"ok": false, "errorMessage": "Non-acceptable Network"}',
                   content_type="application/json")
    with pytest.raises(TopupError) as info:
        await create(svc)
    assert info.value.problem is TopupProblem.PAIR_UNAVAILABLE
    assert await fetch_value(db.reader, "SELECT COUNT(*) FROM deposits WHERE order_id IS NOT NULL") == 0


# --- coupons --------------------------------------------------------------------------------------------------------

async def test_unknown_code_goes_to_smsonline_and_its_refusal_reaches_the_user(svc, fake, db):
    with pytest.raises(CouponError) as info:
        await create(svc, coupon="BOGUS-CODE")
    assert info.value.problem is CouponProblem.REJECTED_BY_GATEWAY
    assert fake.requests_to("/cryptomus/direct/")[-1].json == {"apiKey": KEY, "couponCode": "BOGUS-CODE"}
    assert await fetch_value(db.reader, "SELECT status FROM deposits") == "failed"
    assert await fetch_value(db.reader, "SELECT COUNT(*) FROM deposits WHERE order_id IS NOT NULL") == 0
    # The user can go on without it.
    d = await create(svc)
    assert d.status is DepositStatus.PENDING and d.gateway_coupon is None


async def test_code_smsonline_accepts_is_kept_on_the_deposit(svc, fake, db):
    d = await create(svc, coupon="SAVE10")
    assert fake.requests_to("/cryptomus/direct/")[-1].json == {"apiKey": KEY, "couponCode": "SAVE10"}
    assert d.gateway_coupon == "SAVE10" and d.coupon_id is None
    fake.set_status(d.order_id, "paid")
    await svc.reconciler.run_once(now=due(d))
    # SMSOnline applies its own coupon; the bot adds no bonus of its own.
    assert await ledger_rows(db, d.id) == [("deposit", 515)]


async def test_bot_coupon_is_not_sent_to_smsonline_and_pays_its_bonus_once(svc, fake, db):
    async with db.transaction() as tx:
        await coupon_repo.create(tx, code="BOT20", kind=CouponKind.PERCENT, value=20)
    d = await create(svc, 1000, coupon="BOT20")
    assert fake.requests_to("/cryptomus/direct/")[-1].json == {"apiKey": KEY}
    assert d.coupon_id is not None and d.gateway_coupon is None
    fake.set_status(d.order_id, "paid")
    await asyncio.gather(*(svc.reconciler.run_once(now=due(d)) for _ in range(3)))
    assert await ledger_rows(db, d.id) == [("deposit", 1000), ("bonus", 200)]
    assert await balance(db) == 1200
    await assert_ledger_consistent(db)


# --- expiry and late payment ----------------------------------------------------------------------------------------

async def test_expired_deposit_is_still_credited_when_paid_late(svc, fake, db):
    d = await create(svc)
    assert d.expires_at == fake.deposits[d.order_id]["expire_at"]
    after_expiry = d.expires_at + 1

    report = await svc.reconciler.run_once(now=after_expiry)
    assert report.expired == 1
    assert (await deposit(db, d.id)).status is DepositStatus.EXPIRED
    [expired] = await notifications(db, "deposit_expired")
    assert (expired["chat_id"], expired["deposit_id"]) == (ALICE, d.id)
    assert await balance(db) == 0

    # A second pass does not tell the user twice.
    await svc.reconciler.run_once(now=after_expiry + 5)
    assert len(await notifications(db, "deposit_expired")) == 1

    fake.set_status(d.order_id, "paid")
    report = await svc.reconciler.run_once(now=after_expiry + 30)
    assert report.credited == 1
    late = await deposit(db, d.id)
    assert late.status is DepositStatus.PAID
    assert await balance(db) == 515
    assert await ledger_rows(db, d.id) == [("deposit", 515)]
    await assert_ledger_consistent(db)
    assert len(await notifications(db, "deposit_paid")) == 1


async def test_polling_stops_after_the_grace_period(svc, fake, db):
    d = await create(svc)
    end = d.expires_at + LATE_PAYMENT_GRACE_SECONDS + 1
    await svc.reconciler.run_once(now=end)
    assert (await deposit(db, d.id)).next_check_at is None
    report = await svc.reconciler.run_once(now=end + 3600)
    assert report.checked == 0


# --- the gateway's other verdicts -------------------------------------------------------------------------------------

async def test_cancelled_at_the_gateway_closes_the_deposit_uncredited(svc, fake, db):
    d = await create(svc)
    fake.set_status(d.order_id, "cancel")
    await svc.reconciler.run_once(now=due(d))
    closed = await deposit(db, d.id)
    assert closed.status is DepositStatus.CANCELLED
    assert await balance(db) == 0


async def test_a_payment_after_the_gateway_said_cancel_is_still_found_and_credited(svc, fake, db):
    """SMSOnline is polling-only: a deposit it reported `cancel` is polled, with the usual back-off, until an hour
    past expiry (the README's promise), so a later `paid` is credited; then polling stops."""
    late, never = await create(svc), await create(svc)
    for d in (late, never):
        fake.set_status(d.order_id, "cancel")
    now = due(late)
    await svc.reconciler.run_once(now=now)
    for d in (late, never):
        closed = await deposit(db, d.id)
        assert closed.status is DepositStatus.CANCELLED
        assert closed.next_check_at == now + next_check_delay(now - d.created_at, 1)  # the same back-off as any
    fake.set_status(late.order_id, "paid")
    report = await svc.reconciler.run_once(now=late.expires_at + LATE_PAYMENT_GRACE_SECONDS - 60)
    assert report.credited == 1
    assert await ledger_rows(db, late.id) == [("deposit", 515)]
    assert (await deposit(db, late.id)).status is DepositStatus.PAID
    assert (await deposit(db, never.id)).next_check_at is not None
    await svc.reconciler.run_once(now=never.expires_at + LATE_PAYMENT_GRACE_SECONDS + 1)
    assert (await deposit(db, never.id)).next_check_at is None


async def test_an_underpayment_never_credits_more_than_the_deposit(svc, fake, db):
    """A $5.15 deposit reported underpaid with payment_amount_usd 7.00 credited $7 before: the figures contradict
    each other, so it is held for a person and nothing is credited."""
    d = await create(svc)
    fake.set_status(d.order_id, "wrong_amount", payment_amount_usd="7.00")
    await svc.reconciler.run_once(now=due(d))
    assert await balance(db) == 0 and await ledger_rows(db, d.id) == []
    [review] = await notifications(db, "admin_deposit_review")
    assert review["deposit_id"] == d.id and "underpaid" in review["payload"]["reason"]


async def test_an_underpayment_within_the_deposit_credits_what_arrived(svc, fake, db):
    d = await create(svc)
    fake.set_status(d.order_id, "wrong_amount", payment_amount_usd="3.00")
    await svc.reconciler.run_once(now=due(d))
    assert await ledger_rows(db, d.id) == [("deposit", 300)]


@pytest.mark.parametrize(("extra", "credited"), [
    ({"amountInUSD": "51.50"}, None),             # the invoice's USD value is not the deposit's
    ({"amountInCrypto": "0.01"}, None),           # nor the coin amount it asks
    ({"currency": "BTC"}, None),                  # nor the coin
    ({"payment_amount_usd": "9.00"}, None),       # more than asked, with no coin amount to prove it
    ({"payment_amount_usd": "5.20"}, 515),        # within 1 %: believed, credited at most the deposit's worth
    ({"payment_amount": "6.18", "payment_amount_usd": "6.18"}, 618),  # 1.2x the coins: worth 1.2x the quote
])
async def test_paid_figures_are_checked_against_the_deposit(svc, fake, db, extra, credited):
    d = await create(svc)
    assert d.pay_amount == Decimal("5.15")
    fake.set_status(d.order_id, "paid", **extra)
    await svc.reconciler.run_once(now=due(d))
    if credited is None:
        assert await ledger_rows(db, d.id) == []
        assert len(await notifications(db, "admin_deposit_review")) == 1
    else:
        assert await ledger_rows(db, d.id) == [("deposit", credited)]


async def test_held_payment_is_flagged_to_the_operator_once_and_credited_when_released(svc, fake, db):
    d = await create(svc)
    fake.set_status(d.order_id, "locked")
    await svc.reconciler.run_once(now=due(d))
    await svc.reconciler.run_once(now=due(d) + 5)
    [review] = await notifications(db, "admin_deposit_review")
    assert review["chat_id"] == ADMIN and review["payload"]["reason"] == "locked"
    assert await balance(db) == 0
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING

    fake.set_status(d.order_id, "paid")
    await svc.reconciler.run_once(now=due(d) + 10)
    assert await balance(db) == 515


async def test_polling_errors_back_off_and_recover(svc, fake, db):
    d = await create(svc)
    fake.set_status(d.order_id, "paid")
    fake.fail_next("/cryptomus/transaction/", status=503, body="down")
    report = await svc.reconciler.run_once(now=due(d))
    assert report.errors == 1 and report.credited == 0
    retry_at = (await deposit(db, d.id)).next_check_at
    assert retry_at is not None and retry_at > due(d)
    assert (await svc.reconciler.run_once(now=retry_at - 1)).checked == 0
    assert (await svc.reconciler.run_once(now=retry_at)).credited == 1
    assert await balance(db) == 515


# --- restart --------------------------------------------------------------------------------------------------------

async def test_pending_deposit_survives_a_restart_and_is_credited_once(db, fake, tmp_path: Path):
    await add_user(db)
    first = wire(db, fake.base_url)
    d = await create(first)
    await first.close()
    await db.close()

    reopened = Database(db.url)  # the same data, opened again as after a restart
    await reopened.connect()
    second = wire(reopened, fake.base_url)
    try:
        fake.set_status(d.order_id, "paid")
        reports = [await second.reconciler.run_once(now=due(d)), await second.reconciler.run_once(now=due(d) + 5)]
        assert [r.credited for r in reports] == [1, 0]
        assert await balance(reopened) == 515
        assert await ledger_rows(reopened, d.id) == [("deposit", 515)]
        await assert_ledger_consistent(reopened)
    finally:
        await second.close()
        await reopened.close()


async def test_cancelled_creation_leaves_nothing_that_looks_created(svc, fake, db):
    fake.fail_next("/cryptomus/direct/", status=None, delay=30)  # the gateway call hangs
    task = asyncio.create_task(create(svc))
    for _ in range(100):
        if await fetch_value(db.reader, "SELECT status FROM deposits") == "creating":
            break
        await asyncio.sleep(0.02)
    task.cancel()  # shutdown while waiting for SMSOnline
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await fetch_value(db.reader, "SELECT status FROM deposits") == "failed"


async def test_creation_lost_in_a_crash_is_abandoned_after_restart(db, fake, tmp_path: Path):
    await add_user(db)
    # A crash between reserving the row and hearing from the gateway leaves it 'creating'.
    async with db.transaction() as tx:
        lost = await deposits.reserve(tx, user_id=ALICE, chat_id=ALICE, gateway="smsonline", coin="USDT",
                                      network="TRON", amount_cents=515, coupon_id=None, gateway_coupon=None)
    await db.close()

    reopened = Database(db.url)  # the same data, opened again as after a restart
    await reopened.connect()
    second = wire(reopened, fake.base_url)
    try:
        assert (await second.reconciler.run_once(now=now_ts() + 30)).abandoned == 0  # may still be in flight
        report = await second.reconciler.run_once(now=now_ts() + 3600)
        assert report.abandoned == 1
        assert (await deposit(reopened, lost)).status is DepositStatus.FAILED
    finally:
        await second.close()
        await reopened.close()


# --- one bad answer must not stall everyone else -------------------------------------------------------------------

async def test_absurd_paid_amount_does_not_stop_other_users_being_credited(svc, fake, db):
    bob = 502
    await add_user(db, bob)
    bad = await create(svc)
    good = await svc.topup.create_deposit(user_id=bob, chat_id=bob, coin="USDT", network="BSC", amount_cents=700,
                                          coupon_code=None)
    async with db.transaction() as tx:  # bob's deposit is polled after alice's in every pass
        await deposits.schedule_check(tx, good.id, next_check_at=due(bad) - 1, failed=False)
        await deposits.schedule_check(tx, bad.id, next_check_at=due(bad) - 2, failed=False)
    wallet = {k: v for k, v in fake.deposits[bad.order_id].items() if k not in ("couponCode", "amount")}
    body = {"ok": True, "body": {**wallet, "status": "paid", "is_final": True, "payment_amount_usd": "1e30"}}
    fake.fail_next(f"/cryptomus/transaction/{bad.order_id}", status=200, body=json.dumps(body),
                   content_type="application/json", count=100)
    fake.set_status(good.order_id, "paid")

    for i in range(3):  # what run_forever does: a failed pass is logged and the next one runs
        try:
            await svc.reconciler.run_once(now=due(bad) + 10 * i)
        except Exception:  # noqa: BLE001
            pass
    assert await balance(db, ALICE) == 0  # nothing credited on nonsense
    assert await balance(db, bob) == 700  # ...and bob is still paid
    assert (await deposit(db, good.id)).status is DepositStatus.PAID
    [review] = await notifications(db, "admin_deposit_review")  # the operator is asked to look, once
    assert "unreadable paid amount" in review["payload"]["reason"]


async def test_credentials_rotated_while_deposits_are_pending_alert_the_operator(db, fake):
    """A 401 while polling means paid deposits would sit uncredited: the operator hears it, once per window."""
    await add_user(db)
    good = wire(db, fake.base_url)
    broken = wire(db, fake.base_url, api_key="rotated-away")
    try:
        pending = await create(good)
        fake.set_status(pending.order_id, "paid")
        for i in range(3):
            report = await broken.reconciler.run_once(now=due(pending) + 3600 * i)
            assert report.errors == 1 and report.credited == 0
        [alert] = await notifications(db, "admin_gateway_error")
        assert "user verification failed" in alert["payload"]["detail"]
        assert "rotated-away" not in json.dumps(alert)
        assert await balance(db) == 0
        # fixed: the next pass credits the payment that waited
        assert (await good.reconciler.run_once(now=due(pending) + 3 * 3600)).credited == 1
        assert await balance(db) == 515
    finally:
        await good.close()
        await broken.close()


@pytest.mark.parametrize(("history_amount", "credited"), [
    (500, 500),      # what the history says arrived, in cents [inferred]
    (300, 300),      # less arrived: credited what arrived
    (50_000, None),  # more than the page asked (or another unit): held, never credited
    (None, None),    # no amount in the history: held
])
async def test_a_page_payment_is_credited_what_the_history_says_arrived(db, fake, history_amount, credited):
    await add_user(db)
    gateway = SMSOnlineGateway(fake.base_url, SMS_USER, KEY, timeout_seconds=2, link_methods=frozenset({"page"}))
    settler = Settler(db, admin_chat_id=ADMIN)
    topup = TopupService(db, gateway, Matrix(gateway.pairs), settler, AmountLimits(100, 1_000_000),
                         admin_chat_id=ADMIN)
    try:
        d = await topup.create_deposit(user_id=ALICE, chat_id=ALICE, coin="USD", network="PAGE", amount_cents=500,
                                       coupon_code=None)
        fake.set_invoice_status(fake.invoices[-1]["url"], "paid", amount=history_amount)
        if history_amount is None:
            fake.invoices[-1]["history_amount"] = None
        await Reconciler(db, gateway, settler, interval_seconds=1).run_once(now=due(d))
        if credited is None:
            assert await ledger_rows(db, d.id) == []
            assert len(await notifications(db, "admin_deposit_review")) == 1
        else:
            assert await ledger_rows(db, d.id) == [("deposit", credited)]
    finally:
        await gateway.close()
