"""The store: migrations, the append-only ledger, and the balance it keeps."""
from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from pathlib import Path

import pytest

from services.store import CouponKind, Database, LedgerKind
from services.store import admin as admin_repo
from services.store import coupons, ledger, users
from services.store.db import fetch_all, fetch_value, integrity_errors
from services.store.schema import MIGRATIONS, latest_version

ROOT = Path(__file__).resolve().parent.parent


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


async def test_ledger_and_audit_log_are_append_only(db: Database) -> None:
    await _user(db)
    async with db.transaction() as tx:
        await ledger.append(tx, user_id=1, amount_cents=500, kind=LedgerKind.DEPOSIT, idempotency_key="a")
        await admin_repo.audit(tx, actor_id=9, actor_name="Ops", action="credit", target="user:1")
    for statement in ("UPDATE ledger SET amount_cents = 1", "DELETE FROM ledger",
                      "UPDATE admin_actions SET actor_id = 1", "DELETE FROM admin_actions"):
        with pytest.raises(integrity_errors(), match="append-only"):
            async with db.transaction() as tx:
                await tx.execute(statement)
    assert (await users.get(db.reader, 1)).balance_cents == 500
    assert [e.actor_id for e in await admin_repo.recent_actions(db.reader)] == [9]


async def test_a_failed_transaction_leaves_nothing(db: Database) -> None:
    await _user(db)
    with pytest.raises(RuntimeError):
        async with db.transaction() as tx:
            await ledger.append(tx, user_id=1, amount_cents=500, kind=LedgerKind.DEPOSIT, idempotency_key="a")
            raise RuntimeError("crash between the credit and the commit")
    assert (await users.get(db.reader, 1)).balance_cents == 0
    assert await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger") == 0


async def test_a_second_process_writing_waits_instead_of_failing(sqlite_db: Database) -> None:
    """Another writer (here: a plain sqlite3 connection) holds the lock briefly; our write waits for it."""
    await _user(sqlite_db)
    other = sqlite3.connect(sqlite_db.path, timeout=5)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE users SET first_name = 'locked' WHERE id = 1")

    import asyncio

    async def release_soon() -> None:
        await asyncio.sleep(0.3)
        other.commit()

    releaser = asyncio.create_task(release_soon())
    async with sqlite_db.transaction() as tx:
        await ledger.append(tx, user_id=1, amount_cents=100, kind=LedgerKind.DEPOSIT, idempotency_key="x")
    await releaser
    other.close()
    assert (await users.get(sqlite_db.reader, 1)).balance_cents == 100


async def test_truncate_of_the_ledger_and_the_audit_log_is_refused_on_postgresql(postgres_url: str) -> None:
    db = Database(postgres_url)
    await db.connect()
    try:
        await _user(db)
        async with db.transaction() as tx:
            await ledger.append(tx, user_id=1, amount_cents=500, kind=LedgerKind.DEPOSIT, idempotency_key="a")
        for table, message in (("ledger", "ledger is append-only"), ("admin_actions", "audit log is append-only")):
            with pytest.raises(Exception, match=message):
                async with db.transaction() as tx:
                    await tx.execute(f"TRUNCATE {table}")
        assert await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger") == 1
    finally:
        await db.close()


async def test_every_integer_column_is_64_bit_on_postgresql(db: Database) -> None:
    """Telegram chat ids (-100…) and user ids need 64 bits; PostgreSQL's INTEGER has 32."""
    if db.dialect != "postgresql":
        return
    narrow = await fetch_all(db.reader, "SELECT table_name, column_name FROM information_schema.columns WHERE "
                                        "table_schema = current_schema() AND data_type IN ('integer', 'smallint')")
    assert [tuple(r) for r in narrow] == []
    async with db.transaction() as tx:
        await users.upsert(tx, 9_000_000_000, "big", "Big", None)
    assert (await users.get(db.reader, 9_000_000_000)) is not None


async def test_usernames_and_coupon_codes_match_whatever_their_case(db: Database) -> None:
    async with db.transaction() as tx:
        await users.upsert(tx, 5, "Anna_K", "Anna", None)
        assert await coupons.create(tx, code="Welcome10", kind=CouponKind.PERCENT, value=10) is not None
        assert await coupons.create(tx, code="WELCOME10", kind=CouponKind.FIXED, value=100) is None  # same code
    assert [u.id for u in await users.by_username(db.reader, "@anna_k")] == [5]
    assert (await coupons.by_code(db.reader, "welcome10")).code == "Welcome10"


async def test_several_instances_starting_at_once_migrate_once(database_url: str) -> None:
    dbs = [Database(database_url) for _ in range(4)]
    await asyncio.gather(*(d.connect() for d in dbs))
    try:
        assert {await d.schema_version() for d in dbs} == {latest_version()}
    finally:
        for d in dbs:
            await d.close()


async def test_migrate_command_and_a_start_on_a_newer_database_say_one_line(database_url: str) -> None:
    from bot.database import open_database
    from bot.config import ConfigError, load_settings
    from tests.harness import TOKEN

    env = {**os.environ, "DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "migrate", env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err
    assert out.decode().strip().endswith(f"schema version {latest_version()}")
    db = Database(database_url)
    await db.connect()
    async with db.transaction() as tx:  # a newer release migrated this database further
        if db.dialect == "sqlite":
            await tx.execute(f"PRAGMA user_version = {latest_version() + 1}")
        else:
            await tx.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, 0)",
                             (latest_version() + 1,))
    await db.close()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", "migrate", env=env, cwd=ROOT,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1 and len(err.decode().strip().splitlines()) == 1
    assert "newer than this code's" in err.decode()
    with pytest.raises(ConfigError, match="^DATABASE_URL: the database .* run the newer version of the bot$"):
        await open_database(load_settings({"BOT_TOKEN": TOKEN, "DATABASE_URL": database_url}).database_url)


async def test_the_unix_socket_form_of_the_url_reaches_the_same_database(postgres_url: str) -> None:
    """postgresql://user@/db?host=/var/run/postgresql: asyncpg's socket form, as a Debian PostgreSQL offers it."""
    if "@127.0.0.1:5432/" not in postgres_url or not Path("/var/run/postgresql").is_dir():
        pytest.skip("TEST_DATABASE_URL is not the local server on 127.0.0.1:5432 with a socket in /var/run/postgresql")
    over_tcp = Database(postgres_url)
    await over_tcp.connect()
    over_socket = Database(postgres_url.replace("@127.0.0.1:5432/", "@/") + "&host=/var/run/postgresql")
    await over_socket.connect()
    try:
        async with over_socket.transaction() as tx:
            await users.upsert(tx, 42, "sock", "Socket", None)
        assert (await users.get(over_tcp.reader, 42)).first_name == "Socket"
    finally:
        await over_socket.close()
        await over_tcp.close()
