"""The notification outbox: written in the settling transaction, delivered later by a worker."""
from __future__ import annotations

import json
from typing import Any

from services.store.db import Conn, execute, fetch_all, fetch_value, insert, now_ts
from services.store.models import Notification


TELEGRAM = "telegram"   # messages to chats, delivered by bot/delivery.py
OPERATOR = "operator"   # events for the operator's webhook (OPERATOR_WEBHOOK_URL); chat_id is 0


async def enqueue(conn: Conn, *, kind: str, chat_id: int, dedupe_key: str,
                  user_id: int | None = None, deposit_id: int | None = None,
                  payload: dict[str, Any] | None = None, channel: str = TELEGRAM) -> int | None:
    """Queue a notification once per dedupe key; a repeated event queues nothing."""
    now = now_ts()
    return await insert(
        conn,
        """
        INSERT INTO notifications (kind, chat_id, user_id, deposit_id, payload, dedupe_key, next_attempt_at,
                                   created_at, channel)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (dedupe_key) DO NOTHING
        """,
        (kind, chat_id, user_id, deposit_id, json.dumps(payload or {}), dedupe_key, now, now, channel),
    )


async def enqueue_many(conn: Conn, rows: list[tuple[str, int, str, int | None, int | None, dict[str, Any]]]) -> None:
    """`enqueue` for several notifications in one statement: (kind, chat_id, dedupe_key, user_id, deposit_id,
    payload) each; a key queued before is skipped, the others are queued."""
    if not rows:
        return
    now = now_ts()
    values = ", ".join("(?, ?, ?, ?, ?, ?, ?, ?)" for _ in rows)
    params: list[Any] = []
    for kind, chat_id, dedupe_key, user_id, deposit_id, payload in rows:
        params += [kind, chat_id, user_id, deposit_id, json.dumps(payload), dedupe_key, now, now]
    await execute(conn, f"""
        INSERT INTO notifications (kind, chat_id, user_id, deposit_id, payload, dedupe_key, next_attempt_at, created_at)
        VALUES {values} ON CONFLICT (dedupe_key) DO NOTHING
        """, params)


async def supersede(conn: Conn, dedupe_keys: list[str]) -> None:
    """Drop the still-pending notifications with these keys: a newer one says the same thing, more up to date."""
    if dedupe_keys:
        await execute(conn, f"""
            UPDATE notifications SET status = 'failed', last_error = 'superseded by a newer one'
            WHERE dedupe_key IN ({", ".join("?" * len(dedupe_keys))}) AND status = 'pending'
        """, dedupe_keys)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


async def supersede_prefix(conn: Conn, prefix: str) -> None:
    """Drop every still-pending notification whose key starts with `prefix` (e.g. all of one deposit's card updates)."""
    await execute(conn, """
        UPDATE notifications SET status = 'failed', last_error = 'superseded by a newer one'
        WHERE dedupe_key LIKE ? ESCAPE '\\' AND status = 'pending'
    """, (_like_prefix(prefix),))


async def pending_with_prefix(conn: Conn, prefix: str) -> bool:
    """Whether a notification whose key starts with `prefix` is still waiting to be sent."""
    return await fetch_value(conn, "SELECT 1 FROM notifications WHERE dedupe_key LIKE ? ESCAPE '\\' "
                                   "AND status = 'pending' LIMIT 1", (_like_prefix(prefix),)) is not None


async def queued(conn: Conn, dedupe_key: str) -> bool:
    """Whether a notification with this key was ever queued (sent or not)."""
    return await fetch_value(conn, "SELECT 1 FROM notifications WHERE dedupe_key = ?", (dedupe_key,)) is not None


async def due(conn: Conn, now: int, limit: int = 50, *, channel: str = TELEGRAM) -> list[Notification]:
    rows = await fetch_all(
        conn,
        "SELECT * FROM notifications WHERE channel = ? AND status = 'pending' AND next_attempt_at <= ? "
        "ORDER BY id LIMIT ?",
        (channel, now, limit),
    )
    return [Notification.from_row(r) for r in rows]


async def claim(conn: Conn, *, owner: str, now: int, lease_seconds: int,
                limit: int = 50, channel: str = TELEGRAM) -> list[Notification]:
    """Lease the due rows to `owner` (the sending instance) in the caller's transaction, oldest first.

    SKIP LOCKED makes rows another sender is claiming right now invisible instead of a wait; a row leased to a
    sender that died comes back when its lease ends, and a sender may lease its own rows again at once. One sender
    leads at a time (bot/leader.py); the leases make an overlap, such as a leader that lost its lock without
    noticing yet, send nothing twice that is still in flight.
    """
    skip_locked = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgresql" else ""
    rows = await fetch_all(
        conn,
        f"""
        UPDATE notifications SET claimed_by = ?, claimed_until = ?
        WHERE id IN (SELECT id FROM notifications
                     WHERE channel = ? AND status = 'pending' AND next_attempt_at <= ?
                           AND (claimed_until IS NULL OR claimed_until <= ? OR claimed_by = ?)
                     ORDER BY id LIMIT ?{skip_locked})
        RETURNING *
        """,
        (owner, now + lease_seconds, channel, now, now, owner, limit),
    )
    return sorted((Notification.from_row(r) for r in rows), key=lambda n: n.id)


async def mark_sent(conn: Conn, notification_id: int) -> None:
    await execute(conn, "UPDATE notifications SET status = 'sent', sent_at = ?, attempts = attempts + 1 WHERE id = ?",
                  (now_ts(), notification_id))


async def retry_later(conn: Conn, notification_id: int, *, at: int, error: str) -> None:
    await execute(
        conn,
        "UPDATE notifications SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?, claimed_until = NULL"
        " WHERE id = ?",
        (at, error[:500], notification_id),
    )


async def give_up(conn: Conn, notification_id: int, *, error: str) -> None:
    await execute(conn,
                  "UPDATE notifications SET status = 'failed', attempts = attempts + 1, last_error = ? WHERE id = ?",
                  (error[:500], notification_id))
