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
