"""Shared fixtures: a real SQLite file per test, and the services wired as the bot wires them."""
from __future__ import annotations

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
