"""The admin audit log and the pending second taps that guard money moves."""
from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from services.store.db import Conn, Row, execute, fetch_all, fetch_one, insert, now_ts


@dataclass(frozen=True)
class AuditEntry:
    id: int
    actor_id: int
    actor_name: str
    action: str
    target: str | None
    details: dict[str, Any]
    reason: str | None
    created_at: int


async def audit(conn: Conn, *, actor_id: int, actor_name: str, action: str, target: str | None,
                details: dict[str, Any] | None = None, reason: str | None = None) -> int:
    entry_id = await insert(
        conn,
        "INSERT INTO admin_actions (actor_id, actor_name, action, target, details, reason, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (actor_id, actor_name, action, target, json.dumps(details or {}), reason, now_ts()),
    )
    assert entry_id is not None
    return entry_id


async def recent_actions(conn: Conn, limit: int = 20) -> list[AuditEntry]:
    rows = await fetch_all(conn, "SELECT * FROM admin_actions ORDER BY id DESC LIMIT ?", (limit,))
    return [AuditEntry(r["id"], r["actor_id"], r["actor_name"], r["action"], r["target"], json.loads(r["details"]),
                       r["reason"], r["created_at"]) for r in rows]


async def ask_confirmation(conn: Conn, *, actor_id: int, action: str, payload: dict[str, Any],
                           ttl_seconds: int) -> str:
    token = secrets.token_urlsafe(12)  # fits in callback data with room to spare
    now = now_ts()
    await execute(conn, "INSERT INTO confirmations (token, actor_id, action, payload, expires_at, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                  (token, actor_id, action, json.dumps(payload), now + ttl_seconds, now))
    return token


async def confirmation(conn: Conn, token: str) -> Row | None:
    row: Row | None = await fetch_one(conn, "SELECT * FROM confirmations WHERE token = ?", (token,))
    return row


async def use_confirmation(conn: Conn, token: str, actor_id: int) -> bool:
    """Take the second tap: only by the same admin, only once, only in time. A compare-and-set, so a double tap
    can't run the action twice."""
    now = now_ts()
    return await execute(
        conn,
        "UPDATE confirmations SET used_at = ? WHERE token = ? AND actor_id = ? AND used_at IS NULL AND expires_at > ?",
        (now, token, actor_id, now),
    ) == 1
