"""The append-only ledger. Its unique idempotency key is what makes every credit happen at most once."""
from __future__ import annotations

import aiosqlite

from services.store.db import fetch_all, insert, now_ts
from services.store.models import LedgerEntry, LedgerKind


async def append(conn: aiosqlite.Connection, *, user_id: int, amount_cents: int, kind: LedgerKind,
                 idempotency_key: str, deposit_id: int | None = None, note: str | None = None,
                 actor_id: int | None = None) -> int | None:
    """Add a line unless one with the same key exists. Returns its id, or None if the key was taken."""
    return await insert(
        conn,
        """
        INSERT INTO ledger (user_id, amount_cents, kind, deposit_id, idempotency_key, note, actor_id, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (idempotency_key) DO NOTHING
        """,
        (user_id, amount_cents, kind.value, deposit_id, idempotency_key, note, actor_id, now_ts()),
    )


async def for_user(conn: aiosqlite.Connection, user_id: int, limit: int = 20) -> list[LedgerEntry]:
    rows = await fetch_all(conn, "SELECT * FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit))
    return [LedgerEntry.from_row(r) for r in rows]


def deposit_key(deposit_id: int) -> str:
    return f"deposit:{deposit_id}:credit"


def bonus_key(deposit_id: int) -> str:
    return f"deposit:{deposit_id}:bonus"
