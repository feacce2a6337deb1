"""Users and their cached balance."""
from __future__ import annotations

from services.store.db import Conn, execute, fetch_all, fetch_one, now_ts
from services.store.models import User


async def upsert(conn: Conn, user_id: int, username: str | None, first_name: str,
                 telegram_lang: str | None) -> None:
    """Record the sender as Telegram shows them now. A username is held by one account at a time, so whoever
    carried it before (renamed since) loses it here: /credit @name can't reach a stale holder."""
    now = now_ts()
    if username:
        await execute(conn, "UPDATE users SET username = NULL, updated_at = ? WHERE lower(username) = lower(?) "
                            "AND id <> ?", (now, username, user_id))
    await execute(
        conn,
        """
        INSERT INTO users (id, username, first_name, telegram_lang, created_at, updated_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            username = excluded.username, first_name = excluded.first_name,
            telegram_lang = excluded.telegram_lang, updated_at = excluded.updated_at
        WHERE COALESCE(users.username, '') <> COALESCE(excluded.username, '')
           OR users.first_name <> excluded.first_name
           OR COALESCE(users.telegram_lang, '') <> COALESCE(excluded.telegram_lang, '')
        """,
        (user_id, username, first_name or "", telegram_lang, now, now),
    )


# A user with the test money in their balance (few lines, found through the partial index ledger_user_test).
_USER = """
    SELECT u.*, (SELECT COALESCE(SUM(l.amount_cents), 0) FROM ledger l WHERE l.user_id = u.id AND l.test = 1)
           AS test_cents
    FROM users u
"""


async def get(conn: Conn, user_id: int) -> User | None:
    row = await fetch_one(conn, _USER + " WHERE u.id = ?", (user_id,))
    return User.from_row(row) if row else None


async def by_username(conn: Conn, username: str) -> list[User]:
    """Every known user recorded with this username (more than one only from before usernames were kept unique),
    most recently seen first."""
    rows = await fetch_all(conn, _USER + " WHERE lower(u.username) = lower(?) ORDER BY u.updated_at DESC, u.id",
                           (username.lstrip("@"),))
    return [User.from_row(r) for r in rows]


async def by_external_id(conn: Conn, external_id: str) -> User | None:
    row = await fetch_one(conn, _USER + " WHERE u.external_id = ?", (external_id,))
    return User.from_row(row) if row else None


async def set_external_id(conn: Conn, user_id: int, external_id: str) -> tuple[int | None, str | None]:
    """Bind `external_id` to this user, taking it from whoever held it. Returns (previous holder, this user's
    previous id), so the caller can audit what the binding replaced."""
    holder = await by_external_id(conn, external_id)
    own = await get(conn, user_id)
    previous_holder = holder.id if holder is not None and holder.id != user_id else None
    if previous_holder is not None:
        await execute(conn, "UPDATE users SET external_id = NULL, updated_at = ? WHERE id = ?",
                      (now_ts(), previous_holder))
    await execute(conn, "UPDATE users SET external_id = ?, updated_at = ? WHERE id = ?",
                  (external_id, now_ts(), user_id))
    return previous_holder, own.external_id if own is not None else None


async def set_locale(conn: Conn, user_id: int, locale: str) -> None:
    await execute(conn, "UPDATE users SET locale = ?, updated_at = ? WHERE id = ?", (locale, now_ts(), user_id))


async def balance_mismatches(conn: Conn) -> list[tuple[int, int, int]]:
    """Users whose cached balance differs from their ledger sum: (user id, cached, ledger). Should be empty."""
    rows = await fetch_all(
        conn,
        """
        SELECT u.id, u.balance_cents, COALESCE(SUM(l.amount_cents), 0) AS ledger_sum
        FROM users u LEFT JOIN ledger l ON l.user_id = u.id
        GROUP BY u.id, u.balance_cents HAVING u.balance_cents <> COALESCE(SUM(l.amount_cents), 0)
        """,
    )
    return [(r[0], r[1], r[2]) for r in rows]


async def lock(conn: Conn, user_id: int) -> User | None:
    """Read the user and lock the row until the transaction ends: a check on this user's balance or limits, then
    the write it allows, can't interleave with another transaction's (PostgreSQL; SQLite has one writer anyway).
    Lock order: a deposit's row first, then its user's, then a coupon's."""
    row = await fetch_one(conn, f"SELECT * FROM users WHERE id = ?{conn.for_update}", (user_id,))
    return User.from_row(row) if row else None
