"""SQLite through aiosqlite: one serialized writer, one reader, WAL, and versioned migrations at start."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, ClassVar

import aiosqlite

from services.store.db import Conn, Database, DatabaseURL, Dialect, SchemaTooNew
from services.store.schema import MIGRATIONS, latest_version, statements

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000


class SQLiteConn:
    """The `Conn` over one aiosqlite connection: SQLite speaks `?` natively and reports lastrowid and rowcount."""

    dialect: Dialect = "sqlite"
    for_update = ""  # one writer at a time: a write transaction already holds every row

    def __init__(self, raw: aiosqlite.Connection) -> None:
        self.raw = raw

    # Reads run in one hop to SQLite's thread (execute_fetchall). With a separate execute and fetch, a statement
    # left open between them holds an old snapshot, and other coroutines reading on the same connection meanwhile
    # would see data from before the latest commits.

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        rows = await self.raw.execute_fetchall(sql, tuple(params))
        return next(iter(rows), None)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        return list(await self.raw.execute_fetchall(sql, tuple(params)))

    async def fetch_value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = await self.fetch_one(sql, params)
        return None if row is None else row[0]

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        async with self.raw.execute(sql, tuple(params)) as cur:
            return cur.rowcount

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        async with self.raw.execute(sql, tuple(params)) as cur:
            return cur.lastrowid if cur.rowcount == 1 else None

    async def advisory_lock(self, name: str) -> None:
        """Nothing to do: the writer lock already serializes every write transaction."""

    async def stream(self, sql: str, params: Iterable[Any] = (), *, chunk: int = 1000) -> AsyncIterator[Sequence[Any]]:
        async with self.raw.execute(sql, tuple(params)) as cursor:
            while rows := list(await cursor.fetchmany(chunk)):
                yield rows


class _AlwaysHeld:
    """One process owns a SQLite file's bot: it is always the leader, and never loses that."""

    held = True

    async def lost(self) -> None:
        await asyncio.Event().wait()


class SQLiteDatabase(Database):
    """Writes go through `transaction()`, one at a time, as `BEGIN IMMEDIATE`.

    Serializing writers in-process keeps coroutines from sharing a transaction; BEGIN IMMEDIATE plus
    the busy timeout makes a second process (or a crashed one's leftovers) wait instead of corrupting.
    """

    dialect: ClassVar[Dialect] = "sqlite"

    def __init__(self, target: str | Path | DatabaseURL = "data/bot.sqlite3") -> None:
        url = DatabaseURL.parse(target)
        assert url.path is not None
        self.url = url
        self.path = url.path
        self._writer: aiosqlite.Connection | None = None
        self._reader: SQLiteConn | None = None
        self._tx: SQLiteConn | None = None
        self._write_lock = asyncio.Lock()

    def describe(self) -> str:
        return f"SQLite {self.path}"

    async def connect(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._open()
        self._tx = SQLiteConn(self._writer)
        try:
            await self._writer.execute("PRAGMA journal_mode=WAL")
            await self.migrate()
            self._reader = SQLiteConn(await self._open())
        except BaseException:
            await self.close()
            raise

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
        if self._reader is not None:
            await self._reader.raw.close()
        if self._writer is not None:
            await self._writer.close()
        self._reader = None
        self._writer = None
        self._tx = None

    async def schema_version(self) -> int:
        assert self._writer is not None
        async with self._writer.execute("PRAGMA user_version") as cur:
            row = await cur.fetchone()
        assert row is not None
        return int(row[0])

    async def migrate(self) -> int:
        """Apply every migration newer than the file's `user_version`, each in its own transaction."""
        assert self._writer is not None
        async with self._write_lock:
            version = await self.schema_version()
            if version > latest_version():
                raise SchemaTooNew(f"the database {self.path} is at schema version {version}, newer than this "
                                   f"code's {latest_version()}; run the newer version of the bot")
            for target, steps in MIGRATIONS:
                if target <= version:
                    continue
                await self._writer.execute("BEGIN IMMEDIATE")
                try:
                    if await self.schema_version() >= target:  # another process got there first
                        await self._writer.execute("COMMIT")
                        continue
                    for statement in statements(steps, "sqlite"):
                        await self._writer.execute(statement)
                    await self._writer.execute(f"PRAGMA user_version={int(target)}")
                    await self._writer.execute("COMMIT")
                except BaseException:
                    await self._writer.execute("ROLLBACK")
                    raise
                log.info("database migrated to schema version %s", target)
                version = target
            return version

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A write transaction; commits on normal exit, rolls back on any exception (cancellation included)."""
        if self._writer is None or self._tx is None:
            raise RuntimeError("database is not connected")
        async with self._write_lock:
            await self._writer.execute("BEGIN IMMEDIATE")
            try:
                yield self._tx
            except BaseException:
                await self._writer.execute("ROLLBACK")
                raise
            else:
                await self._writer.execute("COMMIT")

    @asynccontextmanager
    async def separate_reader(self) -> AsyncIterator[Conn]:
        conn = await self._open()
        try:
            yield SQLiteConn(conn)
        finally:
            await conn.close()

    @property
    def reader(self) -> Conn:
        if self._reader is None:
            raise RuntimeError("database is not connected")
        return self._reader

    @asynccontextmanager
    async def session_lock(self, name: str, *, wait: bool = False) -> AsyncIterator[_AlwaysHeld]:
        yield _AlwaysHeld()
