"""aiogram FSM storage in the bot's SQLite file, so a conversation survives a restart."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiogram.fsm.state import State
from aiogram.fsm.storage.base import BaseStorage, StateType, StorageKey

from services.store import Database, now_ts
from services.store.db import execute, fetch_one


def _key(key: StorageKey) -> str:
    return ":".join(str(part) for part in (key.bot_id, key.chat_id, key.user_id, key.thread_id,
                                           key.business_connection_id, key.destiny))


class SQLiteStorage(BaseStorage):
    def __init__(self, db: Database) -> None:
        self._db = db

    async def set_state(self, key: StorageKey, state: StateType = None) -> None:
        value = state.state if isinstance(state, State) else state
        async with self._db.transaction() as tx:
            await execute(tx, """
                INSERT INTO fsm (key, state, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at
                """, (_key(key), value, now_ts()))

    async def get_state(self, key: StorageKey) -> str | None:
        row = await fetch_one(self._db.reader, "SELECT state FROM fsm WHERE key = ?", (_key(key),))
        return row["state"] if row else None

    async def set_data(self, key: StorageKey, data: Mapping[str, Any]) -> None:
        async with self._db.transaction() as tx:
            await execute(tx, """
                INSERT INTO fsm (key, data, updated_at) VALUES (?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at
                """, (_key(key), json.dumps(dict(data)), now_ts()))

    async def get_data(self, key: StorageKey) -> dict[str, Any]:
        row = await fetch_one(self._db.reader, "SELECT data FROM fsm WHERE key = ?", (_key(key),))
        return json.loads(row["data"]) if row else {}

    async def close(self) -> None:
        """The database belongs to the application, which closes it."""
