"""Copy a SQLite database into an empty PostgreSQL one (`python -m bot copy-to-postgres`), all or nothing.

Both sides are first migrated to this code's schema. Every table is copied in foreign-key order with its ids; the
identity sequences then continue after the highest id. Balances are not copied: users arrive at zero and each
balance is rebuilt from the ledger (one UPDATE of the sums, with the per-row balance trigger set aside while the
ledger is loaded: a million lines took 13 minutes through it, here), then compared with the cached balance the
SQLite file had. Any difference, or a non-empty target, and nothing is committed (the trigger's suspension
included: ALTER TABLE is transactional in PostgreSQL).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from services.store.db import Database, DatabaseURL, fetch_all
from services.store.postgres import PostgresDatabase
from services.store.sqlite import SQLiteDatabase

log = logging.getLogger(__name__)

_CHUNK = 2000
_SKIP = {"schema_migrations"}


class CopyRefused(Exception):
    """The copy would lose or mix data; the message says why and nothing was written."""


@dataclass(frozen=True)
class CopyReport:
    rows: dict[str, int]
    users: int
    balance_cents: int


async def _tables_in_fk_order(source: SQLiteDatabase) -> list[str]:
    rows = await fetch_all(source.reader, "SELECT name FROM sqlite_master WHERE type = 'table' "
                                          "AND name NOT LIKE 'sqlite_%' ORDER BY name")
    names = [r["name"] for r in rows if r["name"] not in _SKIP]
    parents: dict[str, set[str]] = {}
    for name in names:
        refs = await fetch_all(source.reader, f'PRAGMA foreign_key_list("{name}")')
        parents[name] = {r["table"] for r in refs if r["table"] != name}
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= set(ordered)]
        if not ready:
            raise CopyRefused(f"circular foreign keys among {sorted(set(names) - set(ordered))}")
        ordered.extend(ready)
    return ordered


async def copy_sqlite_to_postgres(source_url: DatabaseURL, target_url: DatabaseURL,
                                  progress: Callable[[str], None] = lambda line: None) -> CopyReport:
    if source_url.dialect != "sqlite" or target_url.dialect != "postgresql":
        raise CopyRefused("copy-to-postgres copies a sqlite:/// database into a postgresql:// one")
    assert source_url.path is not None
    if not source_url.path.exists():
        raise CopyRefused(f"there is no SQLite file at {source_url.path}")
    source = Database(source_url)
    target = Database(target_url)
    assert isinstance(source, SQLiteDatabase) and isinstance(target, PostgresDatabase)
    await source.connect()  # brings an older file up to this code's schema
    try:
        await target.connect()
        try:
            return await _copy(source, target, progress)
        finally:
            await target.close()
    finally:
        await source.close()


async def _copy(source: SQLiteDatabase, target: PostgresDatabase,
                progress: Callable[[str], None]) -> CopyReport:
    tables = await _tables_in_fk_order(source)
    counts: dict[str, int] = {}
    async with target.transaction() as tx:
        raw = tx.raw  # type: ignore[attr-defined]  # PgConn: COPY needs the asyncpg connection itself
        for table in tables:
            if await tx.fetch_value(f'SELECT EXISTS (SELECT 1 FROM "{table}")'):
                raise CopyRefused(f"the PostgreSQL database already has rows in {table}; copy into an empty one")
        target_columns: dict[str, list[str]] = {}
        for table in tables:
            cols = await raw.fetch("SELECT column_name FROM information_schema.columns "
                                   "WHERE table_schema = current_schema() AND table_name = $1", table)
            target_columns[table] = [c["column_name"] for c in cols]
            if not target_columns[table]:
                raise CopyRefused(f"table {table} is not in the PostgreSQL schema; is its code older than the file?")
        for table in tables:
            source_cols = [r["name"] for r in await fetch_all(source.reader, f'PRAGMA table_info("{table}")')]
            columns = [c for c in source_cols if c in target_columns[table]]
            select = ", ".join(
                "0 AS balance_cents" if (table, c) == ("users", "balance_cents") else f'"{c}"' for c in columns)
            copied = 0
            if table == "ledger":
                await raw.execute("ALTER TABLE ledger DISABLE TRIGGER ledger_keeps_balance")
            async for chunk in source.reader.stream(f'SELECT {select} FROM "{table}" ORDER BY rowid', chunk=_CHUNK):
                await raw.copy_records_to_table(table, records=[tuple(r) for r in chunk], columns=columns)
                copied += len(chunk)
            if table == "ledger":
                await raw.execute("ALTER TABLE ledger ENABLE TRIGGER ledger_keeps_balance")
                await raw.execute("UPDATE users SET balance_cents = sums.total FROM "
                                  "(SELECT user_id, SUM(amount_cents) AS total FROM ledger GROUP BY user_id) AS sums "
                                  "WHERE users.id = sums.user_id")
            counts[table] = copied
            # Tables with an identity id continue it past the copied rows (charges and refunds have text ids).
            if "id" in columns and await raw.fetchval("SELECT pg_get_serial_sequence($1, 'id')", f'"{table}"'):
                await raw.execute(f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), "
                                  f'COALESCE(MAX(id), 1), MAX(id) IS NOT NULL) FROM "{table}"')
            # Planner statistics now, not when autovacuum gets round to it: without them the first queries on a big
            # copy pick poor plans (bench/README.md: a whale's /history took 661 ms right after a copy).
            await raw.execute(f'ANALYZE "{table}"')
            progress(f"{table}: {copied} rows")
        # Every balance was rebuilt from the ledger; it must equal what SQLite had cached.
        expected = {r["id"]: r["balance_cents"]
                    for r in await fetch_all(source.reader, "SELECT id, balance_cents FROM users")}
        rebuilt = {r["id"]: r["balance_cents"] for r in await raw.fetch("SELECT id, balance_cents FROM users")}
        wrong = [(uid, cents, rebuilt.get(uid)) for uid, cents in expected.items() if rebuilt.get(uid) != cents]
        if wrong:
            raise CopyRefused(f"{len(wrong)} balance(s) differ from their ledger sum after the copy, e.g. user "
                              f"{wrong[0][0]}: {wrong[0][1]} in SQLite, {wrong[0][2]} from the ledger; nothing "
                              "was written")
    return CopyReport(counts, len(expected), sum(expected.values()))
