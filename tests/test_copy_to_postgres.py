"""`python -m bot copy-to-postgres`: a SQLite bot's data moves to PostgreSQL whole, balances equal to their ledgers."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from services.settlement import Outcome
from services.store import CouponKind, Database, LedgerKind
from services.store import admin as admin_repo
from services.store import callbacks, coupons, ledger, users
from services.store.db import fetch_all, fetch_value
from tests.test_settlement import Services

ROOT = Path(__file__).resolve().parent.parent
TABLES = ("users", "coupons", "deposits", "coupon_holds", "ledger", "notifications", "callbacks", "admin_actions",
          "payouts", "settings")


async def run_cli(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", *args, cwd=ROOT, env=env,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def a_shop_with_history(path: Path) -> dict[str, int]:
    """A SQLite bot that has run a while: paid deposits with a coupon bonus, a debit, a raw callback, an audit line."""
    db = Database(path)
    await db.connect()
    s = Services(db)
    for user_id in (1, 2, 5_000_000_000):  # a Telegram id past 32 bits
        await s.user(user_id)
    async with db.transaction() as tx:
        await coupons.create(tx, code="WELCOME", kind=CouponKind.FIXED, value=150)
    for user_id, cents, code in ((1, 2500, "WELCOME"), (2, 1000, None), (1, 700, None)):
        deposit = await s.topup.create_deposit(user_id=user_id, chat_id=user_id, coin="USDT", network="TRON",
                                               amount_cents=cents, coupon_code=code)
        assert (await s.settler.settle_payment(s.paid(deposit.order_id))).outcome is Outcome.CREDITED
    await s.topup.create_deposit(user_id=2, chat_id=2, coin="BTC", network="BTC", amount_cents=5000, coupon_code=None)
    async with db.transaction() as tx:
        await ledger.append(tx, user_id=1, amount_cents=-300, kind=LedgerKind.ADJUSTMENT, idempotency_key="admin:t")
        await admin_repo.audit(tx, actor_id=9, actor_name="Ops", action="debit", target="user:1")
        await callbacks.record(tx, source="cryptomus", peer="1.2.3.4", client_ip=None, headers={},
                               body=b'{"sign": "\xff\x00 raw"}')
        await tx.execute("INSERT INTO settings (key, value) VALUES ('telegram_webhook_secret', 's3cret')")
    balances = {u: (await users.get(db.reader, u)).balance_cents for u in (1, 2)}
    assert balances == {1: 2500 + 150 + 700 - 300, 2: 1000}
    await db.close()
    return balances


async def test_copy_moves_everything_and_every_balance_equals_its_ledger(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "bot.sqlite3"
    balances = await a_shop_with_history(source)
    env = {**os.environ, "DATABASE_URL": postgres_url}
    code, out, err = await run_cli("copy-to-postgres", f"sqlite:///{source}", env=env)
    assert code == 0, err
    assert "each equal to its ledger sum" in out

    old, new = Database(source), Database(postgres_url)
    await old.connect()
    await new.connect()
    try:
        for table in TABLES:
            before = [tuple(r) for r in await fetch_all(old.reader, f"SELECT * FROM {table} ORDER BY 1")]
            after = [tuple(r) for r in await fetch_all(new.reader, f"SELECT * FROM {table} ORDER BY 1")]
            assert after == before, table
        assert await users.balance_mismatches(new.reader) == []
        assert {u: (await users.get(new.reader, u)).balance_cents for u in (1, 2)} == balances
        # Ids go on after the copied ones, and the ledger is still append-only.
        s = Services(new)
        deposit = await s.topup.create_deposit(user_id=2, chat_id=2, coin="USDT", network="TRON", amount_cents=900,
                                               coupon_code=None)
        assert deposit.id == 1 + await fetch_value(old.reader, "SELECT MAX(id) FROM deposits")
        assert (await s.settler.settle_payment(s.paid(deposit.order_id))).outcome is Outcome.CREDITED
        assert (await users.get(new.reader, 2)).balance_cents == balances[2] + 900
    finally:
        await old.close()
        await new.close()


async def test_copy_into_a_database_that_has_data_writes_nothing(tmp_path: Path, postgres_url: str) -> None:
    source = tmp_path / "bot.sqlite3"
    await a_shop_with_history(source)
    target = Database(postgres_url)
    await target.connect()
    async with target.transaction() as tx:
        await users.upsert(tx, 77, "already", "Here", None)
    await target.close()
    code, _, err = await run_cli("copy-to-postgres", str(source), env={**os.environ, "DATABASE_URL": postgres_url})
    assert code == 1 and "already has rows in users" in err
    target = Database(postgres_url)
    await target.connect()
    try:
        assert await fetch_value(target.reader, "SELECT COUNT(*) FROM users") == 1
        assert await fetch_value(target.reader, "SELECT COUNT(*) FROM ledger") == 0
    finally:
        await target.close()


async def test_copy_wants_a_postgresql_target(tmp_path: Path) -> None:
    code, _, err = await run_cli("copy-to-postgres", env={**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path}/x"})
    assert code == 2 and "DATABASE_URL must name the PostgreSQL database" in err
