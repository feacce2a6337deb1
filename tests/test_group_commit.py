"""Database.run: one write transaction per body, on SQLite shared by the bodies that arrive together (group commit),
with every body's guarantee intact: its own failure undoes only its own writes, nothing is reported before the
COMMIT that covers it, and the ledger's UNIQUE key still lets a credit happen once."""
from __future__ import annotations

import asyncio
import sqlite3

import pytest

from services.store import Database, LedgerKind
from services.store import ledger, users
from services.store.db import Conn, fetch_all, fetch_value


async def _users(db: Database, count: int) -> None:
    async with db.transaction() as tx:
        for uid in range(1, count + 1):
            await users.upsert(tx, uid, None, f"user{uid}", "en")


def _credit(uid: int, key: str, cents: int = 100):
    async def work(tx: Conn) -> int | None:
        return await ledger.append(tx, user_id=uid, amount_cents=cents, kind=LedgerKind.DEPOSIT, idempotency_key=key)
    return work


async def test_concurrent_bodies_credit_each_key_once(db: Database) -> None:
    """200 bodies at once, every key sent 4 times: 50 credits, each balance equal to its ledger."""
    await _users(db, 10)
    bodies = [_credit(1 + k % 10, f"key-{k}") for k in range(50) for _ in range(4)]
    results = await asyncio.gather(*(db.run(body) for body in bodies))
    assert sum(r is not None for r in results) == 50
    assert await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger") == 50
    assert await users.balance_mismatches(db.reader) == []
    assert await fetch_value(db.reader, "SELECT SUM(balance_cents) FROM users") == 5000


async def test_a_failing_body_undoes_only_its_own_writes(db: Database) -> None:
    await _users(db, 3)

    async def credit_then_fail(tx: Conn) -> None:
        await _credit(2, "doomed")(tx)
        raise ValueError("the body's own failure")

    outcomes = await asyncio.gather(db.run(_credit(1, "a")), db.run(credit_then_fail), db.run(_credit(3, "c")),
                                    return_exceptions=True)
    assert isinstance(outcomes[1], ValueError)
    assert outcomes[0] is not None and outcomes[2] is not None
    rows = await fetch_all(db.reader, "SELECT idempotency_key FROM ledger ORDER BY idempotency_key")
    assert [r[0] for r in rows] == ["a", "c"]
    assert [(await users.get(db.reader, uid)).balance_cents for uid in (1, 2, 3)] == [100, 0, 100]


async def test_a_constraint_violation_in_one_body_leaves_the_others_committed(db: Database) -> None:
    """A CHECK/UNIQUE failure mid-body (here: a ledger line for a user that doesn't exist) is that body's error."""
    await _users(db, 2)
    outcomes = await asyncio.gather(db.run(_credit(1, "x")), db.run(_credit(999, "orphan")), db.run(_credit(2, "y")),
                                    return_exceptions=True)
    assert isinstance(outcomes[1], Exception)
    assert await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger") == 2


async def test_results_are_visible_to_readers_once_run_returns(db: Database) -> None:
    await _users(db, 1)
    for k in range(20):
        await db.run(_credit(1, f"k{k}", 1))
        assert (await users.get(db.reader, 1)).balance_cents == k + 1


async def test_sqlite_refuses_a_body_that_awaits_anything_but_its_connection(sqlite_db: Database) -> None:
    """Such a body would hold the one writer while it waits: refused, and its writes undone."""
    await _users(sqlite_db, 1)

    async def waits(tx: Conn) -> None:
        await _credit(1, "before-sleep")(tx)
        await asyncio.sleep(0.01)

    with pytest.raises(RuntimeError, match="awaited something other than its connection"):
        await sqlite_db.run(waits)
    assert await fetch_value(sqlite_db.reader, "SELECT COUNT(*) FROM ledger") == 0
    assert await sqlite_db.run(_credit(1, "after")) is not None  # the writer is free again


async def test_sqlite_commit_failure_fails_every_body_of_the_group(sqlite_db: Database, monkeypatch) -> None:
    """Nothing is reported done unless the COMMIT covering it succeeded."""
    await _users(sqlite_db, 1)
    real = sqlite_db._run_group  # type: ignore[attr-defined]

    def failing_commit(writer, group):  # noqa: ANN001
        raw = writer._conn
        raw.execute("BEGIN IMMEDIATE")
        for job in group:
            job.result = None
        raw.execute("ROLLBACK")
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(sqlite_db, "_run_group", failing_commit)
    outcomes = await asyncio.gather(*(sqlite_db.run(_credit(1, f"k{k}")) for k in range(5)), return_exceptions=True)
    assert all(isinstance(o, sqlite3.OperationalError) for o in outcomes)
    monkeypatch.setattr(sqlite_db, "_run_group", real)
    assert await fetch_value(sqlite_db.reader, "SELECT COUNT(*) FROM ledger") == 0
    assert await sqlite_db.run(_credit(1, "later")) is not None


async def test_sqlite_bodies_arriving_together_share_one_commit(sqlite_db: Database, monkeypatch) -> None:
    """The point of it: 64 concurrent bodies take far fewer than 64 transactions."""
    await _users(sqlite_db, 1)
    groups: list[int] = []
    real = sqlite_db._run_group  # type: ignore[attr-defined]

    def counting(writer, group):  # noqa: ANN001
        groups.append(len(group))
        return real(writer, group)

    monkeypatch.setattr(sqlite_db, "_run_group", counting)
    await asyncio.gather(*(sqlite_db.run(_credit(1, f"k{k}")) for k in range(64)))
    assert sum(groups) == 64
    assert len(groups) <= 3, groups
