"""The store: migrations, the append-only ledger, and the balance it keeps."""
from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from services.store import Database, LedgerKind
from services.store import ledger, users
from services.store.db import fetch_value
from services.store.schema import MIGRATIONS


async def _user(db: Database, user_id: int = 1) -> None:
    async with db.transaction() as tx:
        await users.upsert(tx, user_id, "name", "Name", "en")


async def test_schema_is_migrated_once_and_recorded(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    for _ in range(2):  # a second start on the same file changes nothing
        db = Database(path)
        await db.connect()
        assert await fetch_value(db.reader, "PRAGMA user_version") == MIGRATIONS[-1][0]
        assert await fetch_value(db.reader, "PRAGMA journal_mode") == "wal"
        await db.close()


async def test_balance_follows_the_ledger(db: Database) -> None:
    await _user(db)
    async with db.transaction() as tx:
        assert await ledger.append(tx, user_id=1, amount_cents=500, kind=LedgerKind.DEPOSIT, idempotency_key="a")
        assert await ledger.append(tx, user_id=1, amount_cents=-200, kind=LedgerKind.ADJUSTMENT, idempotency_key="b")
        again = await ledger.append(tx, user_id=1, amount_cents=999, kind=LedgerKind.DEPOSIT, idempotency_key="a")
        assert again is None
    user = await users.get(db.reader, 1)
    assert user is not None and user.balance_cents == 300
    assert await users.balance_mismatches(db.reader) == []


async def test_ledger_is_append_only(db: Database) -> None:
    await _user(db)
    async with db.transaction() as tx:
        await ledger.append(tx, user_id=1, amount_cents=500, kind=LedgerKind.DEPOSIT, idempotency_key="a")
    for statement in ("UPDATE ledger SET amount_cents = 1", "DELETE FROM ledger"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            async with db.transaction() as tx:
                await tx.execute(statement)
    assert (await users.get(db.reader, 1)).balance_cents == 500


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    await _user(db)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await ledger.append(tx, user_id=1, amount_cents=500, kind=LedgerKind.DEPOSIT, idempotency_key="a")
            raise RuntimeError("crash between the credit and the commit")
    assert (await users.get(db.reader, 1)).balance_cents == 0
    assert await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger") == 0


async def test_a_second_process_writing_waits_instead_of_failing(db: Database) -> None:
    """Another writer (here: a plain sqlite3 connection) holds the lock briefly; our write waits for it."""
    await _user(db)
    other = sqlite3.connect(db.path, timeout=5)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE users SET first_name = 'locked' WHERE id = 1")

    import asyncio

    async def release_soon() -> None:
        await asyncio.sleep(0.3)
        other.commit()

    releaser = asyncio.create_task(release_soon())
    async with db.transaction() as tx:
        await ledger.append(tx, user_id=1, amount_cents=100, kind=LedgerKind.DEPOSIT, idempotency_key="x")
    await releaser
    other.close()
    assert (await users.get(db.reader, 1)).balance_cents == 100
