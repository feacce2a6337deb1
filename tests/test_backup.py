"""`python -m bot backup`: a consistent copy of the SQLite database, taken while the bot keeps writing."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from pathlib import Path

from bot.backup import backup_sqlite, run_backup
from services.store import Database, LedgerKind
from services.store import ledger, users
from tests.test_e2e import bot_env

USERS = range(9001, 9011)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", "backup", *args],
                          cwd=str(Path(env["DATABASE_URL"][10:]).parent), env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def consistent(path: Path) -> tuple[int, int]:
    """(ledger lines, users whose balance differs from their ledger sum) in a copy."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        lines = conn.execute("SELECT COUNT(*) FROM ledger").fetchone()[0]
        mismatches = conn.execute("""
            SELECT COUNT(*) FROM (SELECT u.id FROM users u LEFT JOIN ledger l ON l.user_id = u.id
                                  GROUP BY u.id HAVING u.balance_cents <> COALESCE(SUM(l.amount_cents), 0))
        """).fetchone()[0]
        return lines, mismatches
    finally:
        conn.close()


async def test_backup_while_the_bot_writes_is_one_consistent_moment(tmp_path: Path, monkeypatch, capsys) -> None:
    db = Database(tmp_path / "bot.sqlite3")
    await db.connect()
    counter = 0

    async def credit_one() -> None:
        nonlocal counter
        counter += 1
        async with db.transaction() as tx:
            user_id = USERS[counter % len(USERS)]
            await users.upsert(tx, user_id, None, "Backup", "en")
            await ledger.append(tx, user_id=user_id, amount_cents=counter, kind=LedgerKind.ADJUSTMENT,
                                idempotency_key=f"backup-test:{counter}")

    try:
        for _ in range(200):
            await credit_one()
        before = counter
        env = bot_env(tmp_path)
        stop = asyncio.Event()

        async def keep_writing() -> None:
            while not stop.is_set():
                await credit_one()
                await asyncio.sleep(0)

        writer = asyncio.create_task(keep_writing())
        # The real command once, then the same function twice more, all while the writes go on.
        result = await asyncio.to_thread(run_cli, env, str(tmp_path / "copy0.sqlite3"))
        assert result.returncode == 0, result.stderr
        assert "Backed up" in result.stdout and "ledger lines" in result.stdout
        copies = [tmp_path / "copy0.sqlite3"]
        for n in (1, 2):
            copies.append(tmp_path / f"copy{n}.sqlite3")
            await asyncio.to_thread(backup_sqlite, db.path, copies[-1])
        stop.set()
        await writer
        assert counter > before + 10  # the bot really was writing during the backups
        for copy in copies:
            lines, mismatches = consistent(copy)
            assert lines >= before and mismatches == 0
        assert not list(tmp_path.glob("*.partial"))
        # The default name lands beside the database, and an existing file is never overwritten.
        monkeypatch.setenv("DATABASE_URL", env["DATABASE_URL"])
        assert run_backup([]) == 0
        assert len(list((tmp_path / "backups").glob("bot-*.sqlite3"))) == 1
        assert run_backup([str(copies[0])]) == 1 and "exists already" in capsys.readouterr().err
    finally:
        await db.close()


def test_backup_on_postgresql_points_to_pg_dump(tmp_path: Path) -> None:
    env = bot_env(tmp_path)
    env["DATABASE_URL"] = "postgresql://postgres@127.0.0.1:5432/test"
    result = subprocess.run([sys.executable, "-m", "bot", "backup"], cwd=str(tmp_path), env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 2 and "pg_dump" in result.stderr and "Traceback" not in result.stderr
