"""Values the bot generates once and must keep (secrets it hands to others), stored beside the data."""
from __future__ import annotations

import secrets

from services.store.db import Database, execute, fetch_one


async def get_or_create_secret(db: Database, key: str, *, nbytes: int = 24) -> str:
    """The stored secret under `key`, generated on first use; concurrent first uses agree on one value."""
    async with db.transaction() as tx:
        await execute(tx, "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING",
                      (key, secrets.token_urlsafe(nbytes)))
        row = await fetch_one(tx, "SELECT value FROM settings WHERE key = ?", (key,))
    assert row is not None
    return str(row["value"])
