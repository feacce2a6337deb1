"""SQLite through aiosqlite: one serialized writer, one reader, WAL, and versioned migrations at start."""
from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

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


class ThreadConn:
    """The `Conn` used inside SQLite's own thread: every method finishes at once, without suspending, so a whole
    transaction body, written as ordinary async repository code, runs to its end within one call to that thread
    (see `SQLiteDatabase.run`). One trip to the thread per transaction instead of two or three per statement."""

    dialect: Dialect = "sqlite"
    for_update = ""

    def __init__(self, raw: sqlite3.Connection) -> None:
        self.raw = raw

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.raw.execute(sql, tuple(params)).fetchone()
        return row

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        return self.raw.execute(sql, tuple(params)).fetchall()

    async def fetch_value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        row = self.raw.execute(sql, tuple(params)).fetchone()
        return None if row is None else row[0]

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return self.raw.execute(sql, tuple(params)).rowcount

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        cursor = self.raw.execute(sql, tuple(params))
        return cursor.lastrowid if cursor.rowcount == 1 else None

    async def advisory_lock(self, name: str) -> None:
        """Nothing to do: the writer lock already serializes every write transaction."""

    async def stream(self, sql: str, params: Iterable[Any] = (), *, chunk: int = 1000) -> AsyncIterator[Sequence[Any]]:
        raise NotImplementedError("stream from a reader, not inside Database.run")
        yield []  # pragma: no cover - makes this an async generator like the other engines'


T = TypeVar("T")

# Bodies that arrive while a group commit is in flight wait for the next one; this many at most share one.
GROUP_COMMIT_MAX = 128


@dataclass
class _Job:
    work: Callable[[Conn], Awaitable[Any]]
    future: asyncio.Future[Any]
    result: Any = None
    error: BaseException | None = field(default=None, repr=False)


def _drive(body: Awaitable[Any]) -> Any:
    """Run a coroutine that never suspends to its end, here and now; refuse one that tries to."""
    assert isinstance(body, Coroutine)
    refusal = "a body given to Database.run awaited something other than its connection"
    try:
        body.send(None)
    except StopIteration as done:
        return done.value
    except RuntimeError as exc:
        if "no running event loop" in str(exc):  # asyncio.sleep & co, called from this thread
            raise RuntimeError(refusal) from exc
        raise
    body.close()
    raise RuntimeError(refusal)


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
        self._waiting: list[_Job] = []
        self._committer: asyncio.Task[None] | None = None

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
        if self._committer is not None:
            await asyncio.gather(self._committer, return_exceptions=True)
            self._committer = None
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

    async def run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """Group commit: `work` joins the next transaction of the one writer, with whatever other bodies arrived
        while the previous one was in flight, each in a SAVEPOINT of its own, the whole group run in one call to
        SQLite's thread and made durable by one COMMIT (one fsync under synchronous=FULL for all of them).

        What each body guarantees is unchanged: a body's exception rolls back its own savepoint only and is raised
        here; the others commit. Nothing is reported done before the COMMIT that covers it; if that COMMIT fails,
        every body of the group gets the error and nothing of it was written. The UNIQUE keys that make a credit
        happen once hold inside one transaction exactly as across several."""
        if self._writer is None:
            raise RuntimeError("database is not connected")
        job = _Job(work, asyncio.get_running_loop().create_future())
        self._waiting.append(job)
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_groups())
        result: T = await job.future
        return result

    async def _commit_groups(self) -> None:
        while self._waiting:
            group = [job for job in self._waiting[:GROUP_COMMIT_MAX] if not job.future.done()]
            del self._waiting[:GROUP_COMMIT_MAX]
            if not group:
                continue
            writer = self._writer
            try:
                if writer is None:
                    raise RuntimeError("database is not connected")
                async with self._write_lock:
                    # One trip to the writer's thread for the whole group (aiosqlite's own queue, so it stays in
                    # order with the connection's other statements).
                    await writer._execute(self._run_group, writer, group)  # type: ignore[no-untyped-call]
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller, then re-raised if fatal
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for job in group:
                if job.future.done():
                    continue
                if job.error is not None:
                    job.future.set_exception(job.error)
                else:
                    job.future.set_result(job.result)

    @staticmethod
    def _run_group(writer: aiosqlite.Connection, group: list[_Job]) -> None:
        """In SQLite's thread: BEGIN IMMEDIATE, each body in its savepoint, COMMIT."""
        raw = writer._conn
        conn = ThreadConn(raw)
        raw.execute("BEGIN IMMEDIATE")
        try:
            for job in group:
                raw.execute("SAVEPOINT body")
                try:
                    job.result = _drive(job.work(conn))
                except Exception as exc:  # noqa: BLE001 - this body's failure, raised to its own caller only
                    job.error = exc
                    raw.execute("ROLLBACK TO body")
                raw.execute("RELEASE body")
            raw.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise

    @asynccontextmanager
    async def separate_reader(self) -> AsyncIterator[Conn]:
        conn = await self._open()
        try:
            yield SQLiteConn(conn)
        finally:
            await conn.close()

    @asynccontextmanager
    async def session_lock(self, name: str, *, wait: bool = False) -> AsyncIterator[_AlwaysHeld]:
        yield _AlwaysHeld()
