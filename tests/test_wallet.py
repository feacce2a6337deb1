"""services/wallet.py under concurrency, on both engines: a real SQLite file and PostgreSQL, from several tasks and
from two Database objects (two sets of connections, as two processes would have) on the one database."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.gateways.base import PaymentState, PaymentUpdate
from services.operator_events import OperatorEvents
from services.settlement import Outcome, Settler
from services.store import Database, LedgerKind
from services.store import deposits, ledger, users
from services.store.db import fetch_all, fetch_value, integrity_errors
from services.wallet import Wallet, WalletError, WalletProblem
from tests.operator import give

ANNA = 7001


@pytest.fixture
async def two(database_url: str) -> AsyncIterator[tuple[Database, Database]]:
    first, second = Database(database_url), Database(database_url)
    await first.connect()
    await second.connect()
    yield first, second
    await first.close()
    await second.close()


def wallets(dbs: tuple[Database, Database]) -> list[Wallet]:
    return [Wallet(db, OperatorEvents(enabled=True)) for db in dbs]


async def balance_is_ledger_sum(db: Database, user_id: int) -> int:
    assert await users.balance_mismatches(db.reader) == []
    live = await ledger.live_balance(db.reader, user_id)
    assert live is not None
    return live


async def test_fifty_concurrent_charges_with_one_key_make_one_line_and_one_answer(
        two: tuple[Database, Database]) -> None:
    await give(two[0], ANNA, 1000)
    pair = wallets(two)

    async def charge(i: int) -> tuple[str, int, int]:
        result = await pair[i % 2].charge(ANNA, 200, description="SMS", reference="o-1", idempotency_key="same")
        return result.charge.id, result.charge.balance_after_cents, result.charge.created_at

    answers = await asyncio.gather(*(charge(i) for i in range(50)))
    assert len(set(answers)) == 1
    assert await fetch_value(two[0].reader, "SELECT COUNT(*) FROM ledger WHERE kind = 'charge'") == 1
    assert await balance_is_ledger_sum(two[1], ANNA) == 800
    # one event and one customer message, whatever the number of retries
    assert await fetch_value(two[0].reader, "SELECT COUNT(*) FROM notifications WHERE channel = 'operator'") == 1
    assert await fetch_value(two[0].reader, "SELECT COUNT(*) FROM notifications WHERE kind = 'balance_charged'") == 1


async def test_charges_that_together_exceed_the_balance_never_take_it_below_zero(
        two: tuple[Database, Database]) -> None:
    await give(two[0], ANNA, 1000)
    pair = wallets(two)

    async def charge(i: int) -> int:
        try:
            await pair[i % 2].charge(ANNA, 100 + (i % 3) * 50, description="", reference=None,
                                     idempotency_key=f"k{i}")
            return 201
        except WalletError as exc:
            assert exc.problem is WalletProblem.INSUFFICIENT_FUNDS and exc.balance_cents is not None
            assert exc.balance_cents >= 0
            return 402

    statuses = await asyncio.gather(*(charge(i) for i in range(40)))
    assert statuses.count(201) >= 6 and statuses.count(402) >= 1
    final = await balance_is_ledger_sum(two[0], ANNA)
    assert 0 <= final < 100  # every charge that fitted was made: what is left can't pay the smallest
    spent = -int(await fetch_value(two[0].reader, "SELECT SUM(amount_cents) FROM ledger WHERE kind = 'charge'"))
    assert spent + final == 1000
    # at no point below zero: every running balance along the ledger is >= 0
    running = 0
    for amount in [r[0] for r in await fetch_all(
            two[0].reader, "SELECT amount_cents FROM ledger WHERE user_id = ? ORDER BY id", (ANNA,))]:
        running += amount
        assert running >= 0


async def test_racing_refunds_never_return_more_than_was_charged(two: tuple[Database, Database]) -> None:
    await give(two[0], ANNA, 1000)
    pair = wallets(two)
    charge = (await pair[0].charge(ANNA, 500, description="VPN", reference=None, idempotency_key="c")).charge

    async def refund(i: int) -> bool:
        try:
            await pair[i % 2].refund(charge.id, 100 if i % 2 else None, idempotency_key=f"r{i}")
            return True
        except WalletError as exc:
            assert exc.problem is WalletProblem.REFUND_EXCEEDS_CHARGE
            return False

    await asyncio.gather(*(refund(i) for i in range(30)))
    refunded = await fetch_value(two[0].reader, "SELECT SUM(amount_cents) FROM ledger WHERE kind = 'refund'")
    assert refunded == 500
    assert await fetch_value(two[0].reader, "SELECT refunded_cents FROM charges") == 500
    assert await balance_is_ledger_sum(two[1], ANNA) == 1000


async def test_the_database_itself_refuses_a_refund_past_the_charge(two: tuple[Database, Database]) -> None:
    await give(two[0], ANNA, 1000)
    charge = (await wallets(two)[0].charge(ANNA, 500, description="", reference=None, idempotency_key="c")).charge
    with pytest.raises(integrity_errors()):
        async with two[0].transaction() as tx:
            await tx.execute("UPDATE charges SET refunded_cents = 501 WHERE id = ?", (charge.id,))
    with pytest.raises(integrity_errors()):
        async with two[0].transaction() as tx:
            await tx.execute("INSERT INTO charges (id, user_id, amount_cents, idempotency_key, request_hash, "
                             "balance_after_cents, created_at) VALUES ('ch_x', ?, 1, 'c', 'h', 0, 0)", (ANNA,))


async def test_a_charge_and_a_deposit_credit_racing_on_one_user_both_land(two: tuple[Database, Database]) -> None:
    await give(two[0], ANNA, 500)
    async with two[0].transaction() as tx:
        deposit_ids = []
        for i in range(10):
            deposit_id = await deposits.reserve(tx, user_id=ANNA, chat_id=ANNA, gateway="cryptomus", coin="USDT",
                                                network="TRON", amount_cents=300, coupon_id=None,
                                                gateway_coupon=None)
            await deposits.mark_created(tx, deposit_id, order_id=f"o{i}", address="T", pay_amount=None,
                                        pay_currency="USDT", expires_at=2**31, payment_url=None, quoted_cents=300,
                                        first_check_at=0)
            deposit_ids.append(deposit_id)
    settlers = [Settler(db, admin_chat_id=None, events=OperatorEvents(enabled=True)) for db in two]
    pair = wallets(two)

    async def credit(i: int) -> Outcome:
        update = PaymentUpdate(gateway="cryptomus", order_id=f"o{i}", state=PaymentState.PAID, paid_cents=300)
        return (await settlers[i % 2].settle_payment(update)).outcome

    async def charge(i: int) -> bool:
        try:
            await pair[(i + 1) % 2].charge(ANNA, 400, description="", reference=None, idempotency_key=f"k{i}")
            return True
        except WalletError:
            return False

    results = await asyncio.gather(*(credit(i) for i in range(10)), *(charge(i) for i in range(10)))
    assert results[:10] == [Outcome.CREDITED] * 10
    charged = sum(1 for ok in results[10:] if ok)
    final = await balance_is_ledger_sum(two[0], ANNA)
    assert final == 500 + 10 * 300 - charged * 400 and final >= 0
    kinds = {r[0] for r in await fetch_all(two[0].reader, "SELECT DISTINCT kind FROM ledger")}
    assert {LedgerKind.DEPOSIT.value, LedgerKind.CHARGE.value} <= kinds


async def test_a_migrated_database_marks_the_sandbox_lines_as_test_money(tmp_path: Path) -> None:
    """A v5 file (before this change) with sandbox and real credits: after migrating, only real money counts."""
    import sqlite3

    from services.store.schema import MIGRATIONS, statements

    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for version, steps in MIGRATIONS:
        if version > 5:
            break
        for statement in statements(steps, "sqlite"):
            conn.execute(statement)
    conn.execute("PRAGMA user_version=5")
    conn.execute("INSERT INTO users (id, first_name, created_at, updated_at) VALUES (1, 'a', 0, 0)")
    for deposit_id, gateway in ((1, "sandbox"), (2, "cryptomus")):
        conn.execute("INSERT INTO deposits (id, user_id, chat_id, gateway, order_id, status, coin, network, "
                     "amount_cents, created_at, updated_at) VALUES (?, 1, 1, ?, ?, 'paid', 'USDT', 'TRON', 700, 0, 0)",
                     (deposit_id, gateway, f"o{deposit_id}"))
        conn.execute("INSERT INTO ledger (user_id, amount_cents, kind, deposit_id, idempotency_key, created_at) "
                     "VALUES (1, 700, 'deposit', ?, ?, 0)", (deposit_id, f"deposit:{deposit_id}:credit"))
    conn.close()
    db = Database(path)
    await db.connect()
    try:
        user = await users.get(db.reader, 1)
        assert user is not None and user.balance_cents == 1400 and user.live_balance_cents == 700
        assert await ledger.live_balance(db.reader, 1) == 700
        with pytest.raises(WalletError) as refused:
            await Wallet(db, OperatorEvents(enabled=False)).charge(1, 701, description="", reference=None,
                                                                   idempotency_key="k")
        assert refused.value.problem is WalletProblem.INSUFFICIENT_FUNDS
    finally:
        await db.close()
