"""Shared fixtures: the store on both engines (a real SQLite file; a schema of its own on the real PostgreSQL), and
the services wired as the bot wires them.

`database_url` is parametrised over ["sqlite", "postgresql"]: a test that takes it, or `db`, or `harness`, runs once
per engine. PostgreSQL is TEST_DATABASE_URL (default postgresql://postgres@127.0.0.1:5432/test); each test gets a
fresh schema `t_<hex>` (passed as `?search_path=` in the URL, so a `python -m bot` subprocess can use it too),
dropped afterwards. When the server is down the PostgreSQL half skips with the reason, or FAILS under CI=true
(or REQUIRE_SERVICES=1): a suite that silently skips in CI proves nothing.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest

from services.store import Database

TEST_DATABASE_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


# The README's test command starts this machine kind's PostgreSQL and Redis when they are down, with the commands
# .ci/run uses, so a fresh machine runs the whole suite too. Elsewhere (no such commands) the tests say what is missing.
_START_LOCAL_SERVICES = {
    5432: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
    6379: 'redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no',
}


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def pytest_sessionstart(session: pytest.Session) -> None:
    for port, command in _START_LOCAL_SERVICES.items():
        if _listening(port) or shutil.which(command.split()[0]) is None:
            continue
        subprocess.run(command, shell=True, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for _ in range(30):
            if _listening(port):
                break
            time.sleep(1)
ENGINES = ("sqlite", "postgresql")
_unreachable: dict[str, str | None] = {}


async def postgres_admin() -> object:
    """A plain asyncpg connection to TEST_DATABASE_URL, or a skip/fail saying PostgreSQL is not reachable."""
    import asyncpg

    if _unreachable.get(TEST_DATABASE_URL):
        service_missing(_unreachable[TEST_DATABASE_URL] or "")
    try:
        return await asyncpg.connect(TEST_DATABASE_URL, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        _unreachable[TEST_DATABASE_URL] = (f"PostgreSQL not reachable at {TEST_DATABASE_URL} ({exc}); start it "
                                           "(.ci/run does) or set TEST_DATABASE_URL")
        service_missing(_unreachable[TEST_DATABASE_URL] or "")
        raise


def with_search_path(url: str, schema: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != "search_path"] + [("search_path", schema)]
    return parts._replace(query=urlencode(query)).geturl()


@contextlib.asynccontextmanager
async def fresh_schema() -> AsyncIterator[str]:
    """A PostgreSQL URL whose schema is the caller's alone (created empty, dropped after)."""
    admin = await postgres_admin()
    schema = f"t_{secrets.token_hex(6)}"
    await admin.execute(f"CREATE SCHEMA {schema}")  # type: ignore[attr-defined]
    try:
        yield with_search_path(TEST_DATABASE_URL, schema)
    finally:
        await admin.execute(f"DROP SCHEMA {schema} CASCADE")  # type: ignore[attr-defined]
        await admin.close()  # type: ignore[attr-defined]


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """PostgreSQL only (race tests): a URL with a schema of this test's own."""
    async with fresh_schema() as url:
        yield url


@pytest.fixture(params=ENGINES)
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """DATABASE_URL for this test, once per engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'bot.sqlite3'}"
        return
    async with fresh_schema() as url:
        yield url


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    await database.connect()
    yield database
    await database.close()


@pytest.fixture
async def sqlite_db(tmp_path: Path) -> AsyncIterator[Database]:
    """SQLite only, for what only SQLite has (PRAGMAs, its file lock, EXPLAIN QUERY PLAN)."""
    database = Database(tmp_path / "bot.sqlite3")
    await database.connect()
    yield database
    await database.close()


@pytest.fixture
async def api():
    from tests.fakes.bot_api import FakeBotAPI

    async with FakeBotAPI() as fake:
        yield fake


@pytest.fixture
async def harness(api, database_url: str):
    from tests.harness import Harness

    h = await Harness.start(api, database_url)
    yield h
    await h.close()


# ----------------------------------------------------------------------------------------------- Redis

TEST_REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def services_required() -> bool:
    """Under CI a test whose server is missing fails: a suite that silently skips it would prove nothing."""
    return os.environ.get("CI") == "true" or os.environ.get("REQUIRE_SERVICES") == "1"


def service_missing(reason: str) -> None:
    if services_required():
        pytest.fail(f"{reason} (CI=true or REQUIRE_SERVICES=1: the test must run)")
    pytest.skip(reason)


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    """A key prefix of this test's own in the test Redis database; its keys are deleted afterwards."""
    from redis.asyncio import Redis
    from redis.exceptions import RedisError

    client = Redis.from_url(TEST_REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
    except (RedisError, OSError) as exc:
        await client.aclose()
        service_missing(f"Redis not reachable at {TEST_REDIS_URL} ({exc}); start it or set TEST_REDIS_URL")
    prefix = f"t{uuid.uuid4().hex[:12]}"
    yield prefix
    keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()
