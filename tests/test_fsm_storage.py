"""The conversation state store: served from memory, written back once per update, and never ahead of the database
in a way a restart could notice."""
from __future__ import annotations

from aiogram.fsm.storage.base import StorageKey

from bot.fsm_storage import FSMWriteBack, SQLiteStorage
from services.store import Database
from services.store.db import fetch_all, fetch_one

KEY = StorageKey(bot_id=1, chat_id=42, user_id=42)


async def _row(db: Database):
    return await fetch_one(db.reader, "SELECT state, data FROM fsm")


async def test_an_update_writes_its_state_and_data_once_when_it_ends(db: Database) -> None:
    storage = SQLiteStorage(db)
    writes: list[int] = []
    real_run = db.run

    async def counting_run(work):  # noqa: ANN001
        writes.append(1)
        return await real_run(work)

    db.run = counting_run  # type: ignore[method-assign]

    async def handler(event: object, data: dict) -> str:
        await storage.set_state(KEY, "Topup:amount")
        await storage.set_data(KEY, {"coin": "USDT"})
        await storage.set_data(KEY, {"coin": "USDT", "network": "TRON"})
        assert await _row(db) is None  # nothing written mid-update
        return "done"

    assert await FSMWriteBack(storage)(handler, object(), {}) == "done"
    assert len(writes) == 1
    row = await _row(db)
    assert row["state"] == "Topup:amount" and row["data"] == '{"coin": "USDT", "network": "TRON"}'

    # a restart (a new storage on the same database) sees it
    again = SQLiteStorage(db)
    assert await again.get_state(KEY) == "Topup:amount"
    assert await again.get_data(KEY) == {"coin": "USDT", "network": "TRON"}


async def test_a_failing_handler_still_writes_what_it_changed(db: Database) -> None:
    storage = SQLiteStorage(db)

    async def handler(event: object, data: dict) -> None:
        await storage.set_state(KEY, "Topup:coin")
        raise ValueError("handler bug")

    try:
        await FSMWriteBack(storage)(handler, object(), {})
    except ValueError:
        pass
    assert (await _row(db))["state"] == "Topup:coin"


async def test_a_change_outside_any_update_is_written_at_once(db: Database) -> None:
    storage = SQLiteStorage(db)
    await storage.set_data(KEY, {"deposit": 7})
    assert (await _row(db))["data"] == '{"deposit": 7}'


async def test_readers_get_copies(db: Database) -> None:
    storage = SQLiteStorage(db)
    await storage.set_data(KEY, {"items": [1]})
    data = await storage.get_data(KEY)
    data["items"].append(2)
    assert await storage.get_data(KEY) == {"items": [1]}


async def test_a_failed_write_back_forgets_the_cached_state(db: Database) -> None:
    """The cache must never claim a step the database didn't store: after a failed write the next read goes to it."""
    storage = SQLiteStorage(db)
    await storage.set_state(KEY, "Topup:coin")

    async def broken_run(work):  # noqa: ANN001
        raise OSError("disk full")

    real_run = db.run
    db.run = broken_run  # type: ignore[method-assign]

    async def handler(event: object, data: dict) -> None:
        await storage.set_state(KEY, "Topup:amount")

    try:
        await FSMWriteBack(storage)(handler, object(), {})
    except OSError:
        pass
    db.run = real_run  # type: ignore[method-assign]
    assert await storage.get_state(KEY) == "Topup:coin"


async def test_the_cache_is_bounded(db: Database) -> None:
    storage = SQLiteStorage(db, cache_size=10)
    for user in range(30):
        await storage.set_state(StorageKey(bot_id=1, chat_id=user, user_id=user), "S")
    assert len(storage._cache) == 10
    assert len(await fetch_all(db.reader, "SELECT key FROM fsm")) == 30
    assert await storage.get_state(StorageKey(bot_id=1, chat_id=0, user_id=0)) == "S"  # read back from the database
