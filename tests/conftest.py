"""Shared fixtures: a real SQLite file per test, and the services wired as the bot wires them."""
from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.store import Database


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
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
async def harness(api, tmp_path: Path):
    from tests.harness import Harness

    h = await Harness.start(api, tmp_path / "bot.sqlite3")
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
