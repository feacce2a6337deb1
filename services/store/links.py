"""Account links: single-use tokens (kept as hashes) that bind a Telegram user to the operator's own user id."""
from __future__ import annotations


from services.store.db import Conn, execute, fetch_one, now_ts


async def add(conn: Conn, *, token_hash: str, external_id: str, expires_at: int) -> None:
    await execute(conn, "INSERT INTO account_links (token_hash, external_id, expires_at, created_at) "
                        "VALUES (?, ?, ?, ?)", (token_hash, external_id, expires_at, now_ts()))


async def use(conn: Conn, token_hash: str, user_id: int) -> str | None:
    """Take the token for this user: once, and only before it expires (a compare-and-set). Its external id, or None."""
    now = now_ts()
    if await execute(conn, "UPDATE account_links SET used_at = ?, used_by = ? "
                           "WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                     (now, user_id, token_hash, now)) != 1:
        return None
    row = await fetch_one(conn, "SELECT external_id FROM account_links WHERE token_hash = ?", (token_hash,))
    return None if row is None else str(row[0])


async def state(conn: Conn, token_hash: str) -> str:
    """Why a token can't be used: 'used', 'expired' or 'unknown'."""
    row = await fetch_one(conn, "SELECT used_at, expires_at FROM account_links WHERE token_hash = ?", (token_hash,))
    if row is None:
        return "unknown"
    return "used" if row["used_at"] is not None else "expired"
