"""Raw gateway callbacks: recorded on arrival, then annotated with how they were judged."""
from __future__ import annotations

import json

import aiosqlite

from services.store.db import execute, insert, now_ts


async def record(conn: aiosqlite.Connection, *, source: str, peer: str | None, client_ip: str | None,
                 headers: dict[str, str], body: bytes) -> int:
    callback_id = await insert(
        conn,
        "INSERT INTO callbacks (source, received_at, peer, client_ip, headers, body) VALUES (?, ?, ?, ?, ?, ?)",
        (source, now_ts(), peer, client_ip, json.dumps(headers), body),
    )
    assert callback_id is not None
    return callback_id


async def judge(conn: aiosqlite.Connection, callback_id: int, *, verdict: str, http_status: int, detail: str = "",
                order_id: str | None = None) -> None:
    await execute(conn, "UPDATE callbacks SET verdict = ?, http_status = ?, detail = ?, order_id = ? WHERE id = ?",
                  (verdict, http_status, detail[:500], order_id, callback_id))
