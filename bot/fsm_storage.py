"""aiogram FSM storage in the bot's database, so a conversation survives a restart; served from memory.

Without Redis one instance owns every conversation (.env.example, REDIS_URL), so this process's copy of a state is
always the latest: reads come from an in-memory cache (the database is read once per key, on a miss), and the
state and data an update changes are written back together, in one statement, when the update is done
(`FSMWriteBack`, registered after aiogram's FSM middleware, so inside the per-user lock). Those writes go through
`Database.run`, so on SQLite the steps of concurrent users share one commit.
"""
from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from aiogram import BaseMiddleware
from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey
from aiogram.types import TelegramObject

from services.store import Database, now_ts
from services.store.db import Conn, execute, fetch_one

# Conversations kept in memory; the least recently used clean one is dropped beyond this (read again on its next
# update). About 1 KiB each.
CACHE_SIZE = 50_000

_UPSERT = """
    INSERT INTO fsm (key, state, data, updated_at) VALUES (?, ?, ?, ?)
    ON CONFLICT (key) DO UPDATE SET state = excluded.state, data = excluded.data, updated_at = excluded.updated_at
"""


def _key(key: StorageKey) -> str:
    return ":".join(str(part) for part in (key.bot_id, key.chat_id, key.user_id, key.thread_id,
                                           key.business_connection_id, key.destiny))


@dataclass
class _Entry:
    state: str | None
    data: str  # JSON, as stored: each reader gets its own copy, as it did from the database
    dirty: bool = False


@dataclass
class _Update:
    """The keys one update changed, written when it ends; `open` is False once they have been."""

    keys: set[str] = field(default_factory=set)
    open: bool = True


_current: ContextVar[_Update | None] = ContextVar("fsm_write_back", default=None)


class SQLiteStorage(BaseStorage):
    """The conversation state in the database's `fsm` table (either engine), with a write-back cache."""

    def __init__(self, db: Database, *, cache_size: int = CACHE_SIZE) -> None:
        self._db = db
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._cache_size = cache_size

    async def _entry(self, key: str) -> _Entry:
        entry = self._cache.get(key)
        if entry is not None:
            self._cache.move_to_end(key)
            return entry
        row = await fetch_one(self._db.reader, "SELECT state, data FROM fsm WHERE key = ?", (key,))
        entry = self._cache.get(key)  # someone else filled it while we read
        if entry is None:
            entry = _Entry(row["state"] if row else None, row["data"] if row else "{}")
            self._cache[key] = entry
            self._trim()
        return entry

    def _trim(self) -> None:
        while len(self._cache) > self._cache_size:
            oldest, entry = next(iter(self._cache.items()))
            if entry.dirty:  # being written back by its update; everything older is at least as recent
                break
            del self._cache[oldest]

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        entry = await self._entry(_key(key))
        entry.state = state.state if isinstance(state, State) else state
        await self._changed(_key(key), entry)

    async def get_state(self, key: StorageKey) -> str | None:
        return (await self._entry(_key(key))).state

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        entry = await self._entry(_key(key))
        entry.data = json.dumps(dict(data))
        await self._changed(_key(key), entry)

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((await self._entry(_key(key))).data)
        return data

    async def _changed(self, key: str, entry: _Entry) -> None:
        entry.dirty = True
        update = _current.get()
        if update is not None and update.open:
            update.keys.add(key)  # written once, when the update is done
        else:
            await self.write_back({key})  # a change outside any update (a background task): written now

    async def write_back(self, keys: set[str]) -> None:
        """State and data of these keys in one statement each, one transaction; on failure the cache forgets them,
        so the next update reads what the database really holds."""
        rows = [(key, entry.state, entry.data, now_ts())
                for key in keys if (entry := self._cache.get(key)) is not None and entry.dirty]
        if not rows:
            return

        async def write(tx: Conn) -> None:
            for row in rows:
                await execute(tx, _UPSERT, row)

        try:
            await self._db.run(write)
        except BaseException:
            for key in keys:
                self._cache.pop(key, None)
            raise
        for key in keys:
            if (entry := self._cache.get(key)) is not None:
                entry.dirty = False

    async def close(self) -> None:
        """The database belongs to the application, which closes it."""


class FSMWriteBack(BaseMiddleware):
    """Writes what an update changed in the conversation state once, when the update is done (even if it failed,
    as each change would have been written at once before)."""

    def __init__(self, storage: SQLiteStorage) -> None:
        self._storage = storage

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        update = _Update()
        token = _current.set(update)
        try:
            return await handler(event, data)
        finally:
            _current.reset(token)
            update.open = False
            if update.keys:
                await self._storage.write_back(update.keys)
