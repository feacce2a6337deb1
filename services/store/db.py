"""SQLite through aiosqlite: one serialized writer, one reader, WAL, and versioned migrations at start."""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite

from services.store.schema import MIGRATIONS

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


def now_ts() -> int:
    return int(time.time())


def path_from_url(url: str) -> Path:
    """`sqlite:///relative/path.db` or `sqlite:////absolute/path.db` (the SQLAlchemy spelling) or a bare path."""
    if url.startswith("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    if "://" in url:
        raise ValueError("only sqlite:/// URLs are supported, e.g. sqlite:///data/bot.sqlite3")
    return Path(url)


class Database:
    """Owns the connections. Writes go through `transaction()`, one at a time, as `BEGIN IMMEDIATE`.

    Serializing writers in-process keeps coroutines from sharing a transaction; BEGIN IMMEDIATE plus
    the busy timeout makes a second process (or a crashed one's leftovers) wait instead of corrupting.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._open()
        await self._writer.execute("PRAGMA journal_mode=WAL")
        await self.migrate()
        self._reader = await self._open()

    async def _open(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        try:
            conn.row_factory = aiosqlite.Row
            await conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            await conn.execute("PRAGMA foreign_keys=ON")
            # FULL: a committed credit survives power loss too, not only a process crash.
            await conn.execute("PRAGMA synchronous=FULL")
        except BaseException:
            await conn.close()  # its thread would otherwise keep the process alive (a file that isn't a database)
            raise
        return conn

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def migrate(self) -> int:
        """Apply every migration newer than the file's `user_version`, each in its own transaction."""
        assert self._writer is not None
        async with self._write_lock:
            version = await self._user_version()
            for target, statements in MIGRATIONS:
                if target <= version:
                    continue
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    for statement in statements:
                        await self._writer.execute(statement)
                    await self._writer.execute(f"PRAGMA user_version={int(target)}")
                    await self._writer.execute("COMMIT")
                except BaseException:
                    await self._writer.execute("ROLLBACK")
                    raise
                log.info("database migrated to schema version %s", target)
                version = target
            return version

    async def _user_version(self) -> int:
        assert self._writer is not None
        async with self._writer.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction; commits on normal exit, rolls back on any exception (cancellation included)."""
        if self._writer is None:
            raise RuntimeError("database is not connected")
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._writer
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    @asynccontextmanager
    async def separate_reader(self) -> AsyncIterator[aiosqlite.Connection]:
        """A connection of its own for a long read (an export), so the shared reader is never held open."""
        conn = await self._open()
        try:
            yield conn
        finally:
            await conn.close()

    @property
    def reader(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise RuntimeError("database is not connected")
        return self._reader

    async def can_write(self) -> bool:
        """A real committed write (a heartbeat row): fails when the disk is full or the file is read-only."""
        try:
            async with self.transaction() as tx:
                await tx.execute("INSERT INTO settings (key, value) VALUES ('health.heartbeat', ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (str(time.time()),))
            return True
        except Exception as exc:  # noqa: BLE001 - health check reports, never raises
            log.warning("database refuses writes: %s", exc)
            return False

    async def ping(self) -> bool:
        try:
            await fetch_value(self.reader, "SELECT 1")
            return True
        except Exception:  # noqa: BLE001 - health check reports, never raises
            return False


# Reads run in one hop to SQLite's thread (execute_fetchall). With a separate execute and fetch, a statement
# left open between them holds an old snapshot, and other coroutines reading on the same connection meanwhile
# would see data from before the latest commits.

async def fetch_one(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
    rows = await conn.execute_fetchall(sql, tuple(params))
    return next(iter(rows), None)


async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
    return list(await conn.execute_fetchall(sql, tuple(params)))


async def fetch_value(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> Any:
    row = await fetch_one(conn, sql, params)
    return None if row is None else row[0]


async def execute(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int:
    """Run a write and return the number of rows it changed."""
    async with conn.execute(sql, tuple(params)) as cur:
        return cur.rowcount


async def insert(conn: aiosqlite.Connection, sql: str, params: Iterable[Any] = ()) -> int | None:
    """Run an INSERT and return the new rowid, or None when ON CONFLICT DO NOTHING skipped it."""
    async with conn.execute(sql, tuple(params)) as cur:
        return cur.lastrowid if cur.rowcount == 1 else None
