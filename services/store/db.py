"""The store's engine-neutral face: one `Conn` shape for SQLite and PostgreSQL, and the `Database` both engines fill.

Repository modules write each SQL statement once, with `?` placeholders, and call the helpers below
(`fetch_one`, `fetch_all`, `fetch_value`, `execute`, `insert`). Each engine's `Conn` adapts: PostgreSQL's turns
`?` into `$n`, an INSERT's new id comes from `RETURNING id`, and rows read by name (`row["col"]`) or position.
What differs for real (locking, triggers, migration bookkeeping) lives in services/store/sqlite.py and postgres.py.
"""
from __future__ import annotations

import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal, ParamSpec, Protocol, Self, TypeVar, cast
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

Dialect = Literal["sqlite", "postgresql"]
Row = Mapping[str, Any]  # aiosqlite.Row and asyncpg.Record both read by name and by position

DEFAULT_DATABASE_URL = "sqlite:///data/bot.sqlite3"

P = ParamSpec("P")
T = TypeVar("T")


def now_ts() -> int:
    return int(time.time())


class Conn(Protocol):
    """A transaction, or a reader in autocommit. Parameters are `?`; the engine adapts them."""

    dialect: Dialect
    # Appended to a SELECT that must lock the rows it reads until the transaction ends: " FOR UPDATE" on
    # PostgreSQL; empty on SQLite, whose single writer (BEGIN IMMEDIATE) already holds every row.
    for_update: str

    # Parameters as one sequence, as aiosqlite and sqlite3 take them: conn.execute(sql, (a, b)).
    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> Any: ...
    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[Any]: ...
    async def fetch_value(self, sql: str, params: Iterable[Any] = ()) -> Any: ...
    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int: ...
    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None: ...
    async def advisory_lock(self, name: str) -> None: ...
    def stream(self, sql: str, params: Iterable[Any] = (), *, chunk: int = 1000) -> AsyncIterator[Sequence[Any]]: ...


# The repository modules' calling convention (a connection, a statement, a parameter tuple). Kept as functions so
# every repository reads the same on both engines.

async def fetch_one(conn: Conn, sql: str, params: Iterable[Any] = ()) -> Any:
    """The first row, or None."""
    return await conn.fetch_one(sql, params)


async def fetch_all(conn: Conn, sql: str, params: Iterable[Any] = ()) -> list[Any]:
    return await conn.fetch_all(sql, params)


async def fetch_value(conn: Conn, sql: str, params: Iterable[Any] = ()) -> Any:
    """The first column of the first row, or None."""
    return await conn.fetch_value(sql, params)


async def execute(conn: Conn, sql: str, params: Iterable[Any] = ()) -> int:
    """Run a write and return the number of rows it changed."""
    return await conn.execute(sql, params)


async def insert(conn: Conn, sql: str, params: Iterable[Any] = ()) -> int | None:
    """Run an INSERT into a table with an `id` column; the new id, or None when ON CONFLICT DO NOTHING skipped it."""
    return await conn.insert(sql, params)


def store_busy_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the store can't take this write right now, try again": SQLite busy past its timeout, a lock
    timeout or a lost connection on PostgreSQL. Not constraint violations: those are answers, not outages."""
    import sqlite3

    import asyncpg

    return (sqlite3.OperationalError, OSError, asyncpg.InterfaceError, asyncpg.exceptions.PostgresConnectionError,
            asyncpg.exceptions.LockNotAvailableError, asyncpg.exceptions.QueryCanceledError,
            asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.AdminShutdownError)


class DatabaseUnreachable(Exception):
    """The database server could not be reached or refused us; the message says which and what to check."""


def integrity_errors() -> tuple[type[Exception], ...]:
    """What a violated constraint (UNIQUE, CHECK, FOREIGN KEY, the append-only triggers) raises, on either engine."""
    import sqlite3

    import asyncpg

    return (sqlite3.IntegrityError, asyncpg.exceptions.IntegrityConstraintViolationError)


class SchemaTooNew(Exception):
    """The database was migrated by newer code than this: running on would write rows that code doesn't expect."""


class Lock(Protocol):
    """A session-level lock held on a connection of its own (leader election, the migration lock)."""

    @property
    def held(self) -> bool: ...

    async def lost(self) -> None:
        """Returns when the lock is gone for good (its connection dropped): stop acting as its holder."""


class Database:
    """Owns the connections of one engine. `Database(url_or_path)` builds the engine the URL names, as
    `pathlib.Path(...)` builds the flavour of its platform: `sqlite:///…` or a path -> SQLite, `postgresql://…` ->
    PostgreSQL.

    The contract both engines keep:
    - `transaction()` is one write transaction: commit on normal exit, rollback on any exception;
    - `reader` reads the latest committed data, outside any transaction;
    - `migrate()` brings the schema to the newest version this code knows (several processes at once included)
      and refuses a database that newer code migrated further (`SchemaTooNew`);
    - `session_lock(name)` tries a lock that lives as long as a connection of its own (a leader).
    """

    dialect: ClassVar[Dialect]
    url: DatabaseURL  # what it was opened with: Database(db.url) opens the same data again (another "process")
    _reader: Conn | None = None  # set by the engine's connect(), cleared by its close()

    def __new__(cls, target: str | Path | DatabaseURL = DEFAULT_DATABASE_URL, **kwargs: Any) -> Self:
        if cls is not Database:
            return super().__new__(cls)
        url = DatabaseURL.parse(target)
        if url.dialect == "postgresql":
            from services.store.postgres import PostgresDatabase

            return cast(Self, super().__new__(PostgresDatabase))
        from services.store.sqlite import SQLiteDatabase

        return cast(Self, super().__new__(SQLiteDatabase))

    async def connect(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def migrate(self) -> int:
        raise NotImplementedError

    async def schema_version(self) -> int:
        raise NotImplementedError

    def transaction(self) -> AbstractAsyncContextManager[Conn]:
        raise NotImplementedError

    async def run(self, work: Callable[[Conn], Awaitable[T]]) -> T:
        """`await work(tx)` as one write transaction, committed before this returns; its exception rolls back only
        its own writes.

        `work` may await nothing but `tx`'s methods (no network, no sleeps, no other locks): that is what lets
        SQLite run the whole body in one call to its thread, in a group commit with the bodies that arrived
        meanwhile (services/store/sqlite.py). On PostgreSQL it is simply `transaction()`."""
        async with self.transaction() as tx:
            return await work(tx)

    def separate_reader(self) -> AbstractAsyncContextManager[Conn]:
        """A connection of its own for a long read (an export), so the shared reader is never held open."""
        raise NotImplementedError

    @property
    def reader(self) -> Conn:
        if self._reader is None:
            raise RuntimeError("database is not connected")
        return self._reader

    def session_lock(self, name: str, *, wait: bool = False) -> AbstractAsyncContextManager[Lock]:
        """Hold `name` while the block runs; `lock.held` says whether it was got (always, with `wait=True`)."""
        raise NotImplementedError

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

    def describe(self) -> str:
        """Where the data lives, for the start-up log line; never a password."""
        raise NotImplementedError


@dataclass(frozen=True)
class DatabaseURL:
    """DATABASE_URL, read: SQLite (a file path) or PostgreSQL (a DSN handed to asyncpg untouched)."""

    dialect: Dialect
    path: Path | None = None   # SQLite
    # PostgreSQL: any form asyncpg accepts, unix sockets (?host=/var/run/postgresql) too. Not in the repr: it may
    # carry a password.
    dsn: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, target: str | Path | DatabaseURL) -> DatabaseURL:
        """`sqlite:///relative.db`, `sqlite:////absolute.db` (the SQLAlchemy spelling) or a bare path;
        `postgresql://…` or `postgres://…`. Raises ValueError with what to write instead."""
        if isinstance(target, DatabaseURL):
            return target
        if isinstance(target, Path):
            return cls("sqlite", path=target)
        text = target.strip()
        if text.startswith("sqlite:///"):
            return cls("sqlite", path=Path(text[len("sqlite:///"):]))
        scheme = text.split("://", 1)[0].lower() if "://" in text else ""
        if scheme in ("postgresql", "postgres"):
            try:
                urlsplit(text).port  # noqa: B018 - raises on a port that is not a number
            except ValueError:
                raise ValueError("the port is not a number; write postgresql://user:password@host:5432/dbname"
                                 ) from None
            return cls("postgresql", dsn=text)
        if scheme.startswith(("postgresql+", "sqlite+")):
            raise ValueError(f"drop the driver suffix {scheme[scheme.index('+'):]!r}: the bot picks its own driver; "
                             "write postgresql://… or sqlite:///…")
        if scheme:
            raise ValueError(f"unsupported scheme {scheme!r}; use sqlite:///data/bot.sqlite3 or "
                             "postgresql://user:password@host:5432/dbname")
        return cls("sqlite", path=Path(text))

    def safe(self) -> str:
        """The URL without its password, for logs."""
        if self.dialect == "sqlite":
            return f"sqlite:///{self.path}"
        assert self.dsn is not None
        parts = urlsplit(self.dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            netloc = f"{userinfo.split(':', 1)[0]}@{host}"
        return parts._replace(netloc=netloc, query="").geturl()


def path_from_url(url: str) -> Path:
    """The SQLite file a URL names (ValueError for anything else); kept for callers that only handle SQLite."""
    parsed = DatabaseURL.parse(url)
    if parsed.path is None:
        raise ValueError("not a SQLite URL")
    return parsed.path


DEADLOCK_ATTEMPTS = 3


def retry_on_deadlock(work: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    """Run a whole transaction again when PostgreSQL broke a deadlock by aborting it (SQLSTATE 40P01).

    The lock order (deposit, then user, then coupon) should make this never happen; it is logged as an error of its
    own, so a broken order shows up instead of hiding among ordinary failures. SQLite has one writer: no deadlocks.
    """

    @functools.wraps(work)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        from asyncpg.exceptions import DeadlockDetectedError

        for attempt in range(1, DEADLOCK_ATTEMPTS + 1):
            try:
                return await work(*args, **kwargs)
            except DeadlockDetectedError as exc:
                log.error("deadlock (SQLSTATE 40P01) in %s, attempt %s of %s: some transaction takes locks out of "
                          "the order deposit, user, coupon: %s", work.__qualname__, attempt, DEADLOCK_ATTEMPTS, exc)
                if attempt == DEADLOCK_ATTEMPTS:
                    raise
        raise AssertionError("unreachable")

    return cast(Callable[P, Awaitable[T]], run)
