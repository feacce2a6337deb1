"""PostgreSQL through asyncpg: a pool for transactions and reads, dedicated connections for session locks.

What this engine adds to the shared repository SQL: `?` becomes `$n`; an INSERT's id comes from `RETURNING id`;
row locks are real (`FOR UPDATE`, advisory locks) because READ COMMITTED lets transactions interleave, where
SQLite's single writer never did; migrations are recorded in `schema_migrations` and applied under an advisory
lock, so that of several instances starting at once one migrates and the others wait.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import asyncpg

from services.store.db import Conn, Database, DatabaseUnreachable, DatabaseURL, Dialect, SchemaTooNew, now_ts
from services.store.schema import MIGRATIONS, latest_version, statements

log = logging.getLogger(__name__)

POOL_SIZE = 10
# A transaction left open (a bug, a hung gateway call inside one) must not hold row locks for ever.
SERVER_SETTINGS = {"idle_in_transaction_session_timeout": "60000", "lock_timeout": "30000"}
CONNECT_TIMEOUT_SECONDS = 10
LOCK_PING_SECONDS = 5.0

_TOKEN = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|\?(\d*)")


@functools.lru_cache(maxsize=1024)
def to_dollar_params(sql: str) -> str:
    """`?` -> `$1, $2, …` and `?N` -> `$N`, outside string literals, quoted names and comments."""
    counter = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal counter
        if not match.group(0).startswith("?"):
            return match.group(0)
        if match.group(1):
            return f"${match.group(1)}"
        counter += 1
        return f"${counter}"

    return _TOKEN.sub(swap, sql)


def _insert_returning_id(sql: str) -> str:
    sql = to_dollar_params(sql).rstrip().rstrip(";")
    return sql if re.search(r"\bRETURNING\b", sql, re.IGNORECASE) else f"{sql} RETURNING id"


def _rowcount(status: str) -> int:
    """asyncpg's command tag ("UPDATE 3", "INSERT 0 1", "DELETE 0") as the number of rows it touched."""
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


def _numeric(text: str) -> int | Decimal:
    """SUM() of BIGINT is NUMERIC in PostgreSQL; money here is integer cents, so a whole number comes back an int,
    as SQLite returns it. (No column is NUMERIC: crypto amounts are Decimal strings in TEXT.)"""
    return int(text) if text.lstrip("-").isdigit() else Decimal(text)


async def _nothing_to_reset(conn: asyncpg.Connection) -> None:
    """Skip asyncpg's reset query on release (advisory unlock, CLOSE ALL, UNLISTEN, RESET ALL): a round trip per
    transaction for session state the pool's connections never take. Session locks live on connections of their
    own (`session_lock`), advisory locks here are transaction-scoped, cursors live inside transactions, and nothing
    LISTENs or SETs. An open transaction is still rolled back by asyncpg before this is called."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("numeric", encoder=str, decoder=_numeric, schema="pg_catalog", format="text")


class PgConn:
    """The `Conn` over an asyncpg connection (a transaction) or the pool (the reader: one statement per checkout,
    so it always reads the latest commit)."""

    dialect: Dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, raw: asyncpg.Connection | asyncpg.Pool) -> None:
        self.raw = raw

    async def fetch_one(self, sql: str, params: Iterable[Any] = ()) -> asyncpg.Record | None:
        return await self.raw.fetchrow(to_dollar_params(sql), *params)

    async def fetch_all(self, sql: str, params: Iterable[Any] = ()) -> list[asyncpg.Record]:
        return list(await self.raw.fetch(to_dollar_params(sql), *params))

    async def fetch_value(self, sql: str, params: Iterable[Any] = ()) -> Any:
        return await self.raw.fetchval(to_dollar_params(sql), *params)

    async def execute(self, sql: str, params: Iterable[Any] = ()) -> int:
        return _rowcount(await self.raw.execute(to_dollar_params(sql), *params))

    async def insert(self, sql: str, params: Iterable[Any] = ()) -> int | None:
        value = await self.raw.fetchval(_insert_returning_id(sql), *params)
        return None if value is None else int(value)

    async def advisory_lock(self, name: str) -> None:
        """Wait for the transaction-scoped lock `name`, held until commit or rollback (for a check over many rows,
        such as a daily sum, where there is no single row to lock)."""
        await self.raw.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", name)

    async def stream(self, sql: str, params: Iterable[Any] = (), *, chunk: int = 1000) -> AsyncIterator[Sequence[Any]]:
        assert isinstance(self.raw, asyncpg.Connection), "stream on a connection of its own (separate_reader)"
        async with self.raw.transaction(isolation="repeatable_read", readonly=True):
            cursor = await self.raw.cursor(to_dollar_params(sql), *params)
            while rows := await cursor.fetch(chunk):
                yield rows


class PgSessionLock:
    """An advisory lock held by a connection of its own. A pooled connection would not do: asyncpg's reset on
    release runs pg_advisory_unlock_all()."""

    def __init__(self, conn: asyncpg.Connection, key: str, held: bool) -> None:
        self._conn = conn
        self._key = key
        self.held = held

    async def lost(self) -> None:
        """Returns once the lock's connection is gone (the server restarted, the network broke)."""
        while True:
            await asyncio.sleep(LOCK_PING_SECONDS)
            try:
                await asyncio.wait_for(self._conn.fetchval("SELECT 1"), LOCK_PING_SECONDS)
            except (TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("the connection holding lock %r is gone (%s)", self._key, exc)
                self.held = False
                return

    async def release(self) -> None:
        if self._conn.is_closed():
            return
        try:
            if self.held:
                await self._conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", self._key)
        finally:
            self.held = False
            await self._conn.close()


class PostgresDatabase(Database):
    dialect: ClassVar[Dialect] = "postgresql"

    def __init__(self, target: str | Path | DatabaseURL, *, pool_size: int = POOL_SIZE) -> None:
        url = DatabaseURL.parse(target)
        assert url.dsn is not None
        self.url = url
        self.dsn = url.dsn
        self._safe = url.safe()
        self._pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._reader: PgConn | None = None
        self._schema = "public"

    def describe(self) -> str:
        return f"PostgreSQL {self._safe} (schema {self._schema})"

    async def _connect_raw(self) -> asyncpg.Connection:
        try:
            conn = await asyncpg.connect(self.dsn, server_settings=dict(SERVER_SETTINGS),
                                         timeout=CONNECT_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnreachable(f"cannot connect to PostgreSQL at {self._safe}: {exc}") from None
        await _init_connection(conn)
        return conn

    async def connect(self) -> None:
        # Migrate first, on a connection of its own (the advisory lock must not live on a pooled connection).
        await self.migrate()
        try:
            self._pool = await asyncpg.create_pool(self.dsn, min_size=1, max_size=self._pool_size,
                                                   server_settings=dict(SERVER_SETTINGS), init=_init_connection,
                                                   reset=_nothing_to_reset, timeout=CONNECT_TIMEOUT_SECONDS)
        except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnreachable(f"cannot connect to PostgreSQL at {self._safe}: {exc}") from None
        self._reader = PgConn(self._pool)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        self._pool = None
        self._reader = None

    async def schema_version(self) -> int:
        conn = await self._connect_raw()
        try:
            return await self._version(conn)
        finally:
            await conn.close()

    @staticmethod
    async def _version(conn: asyncpg.Connection) -> int:
        exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
        if not exists:
            return 0
        return int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_migrations"))

    async def migrate(self) -> int:
        """Apply every newer migration, each in its own transaction, holding the migration lock meanwhile."""
        conn = await self._connect_raw()
        try:
            self._schema = await conn.fetchval("SELECT current_schema()") or "public"
            lock = f"{self._schema}:migrate"
            await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", lock)
            try:
                await conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations "
                                   "(version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)")
                version = await self._version(conn)
                if version > latest_version():
                    raise SchemaTooNew(f"the database {self._safe} is at schema version {version}, newer than "
                                       f"this code's {latest_version()}; run the newer version of the bot")
                for target, steps in MIGRATIONS:
                    if target <= version:
                        continue
                    async with conn.transaction():
                        for statement in statements(steps, "postgresql"):
                            await conn.execute(statement)
                        await conn.execute("INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                                           target, now_ts())
                    log.info("database migrated to schema version %s", target)
                    version = target
                return version
            finally:
                await conn.execute("SELECT pg_advisory_unlock(hashtextextended($1, 0))", lock)
        finally:
            await conn.close()

    def _require_pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise RuntimeError("database is not connected")
        return self._pool

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        """A READ COMMITTED transaction on a pooled connection; commits on normal exit, rolls back on any exception.

        Unlike SQLite's, these run side by side: a check-then-act must lock what it checks (see `for_update`,
        `advisory_lock`), in the order deposit, then user, then coupon."""
        async with self._require_pool().acquire() as raw, raw.transaction():
            yield PgConn(raw)

    @asynccontextmanager
    async def separate_reader(self) -> AsyncIterator[Conn]:
        async with self._require_pool().acquire() as raw:
            yield PgConn(raw)

    @asynccontextmanager
    async def session_lock(self, name: str, *, wait: bool = False) -> AsyncIterator[PgSessionLock]:
        conn = await self._connect_raw()
        key = f"{self._schema}:{name}"
        try:
            if wait:
                await conn.execute("SELECT pg_advisory_lock(hashtextextended($1, 0))", key)
                held = True
            else:
                held = bool(await conn.fetchval("SELECT pg_try_advisory_lock(hashtextextended($1, 0))", key))
        except BaseException:
            await conn.close()
            raise
        lock = PgSessionLock(conn, key, held)
        try:
            yield lock
        finally:
            await lock.release()
