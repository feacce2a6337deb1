"""Operator API keys, kept only as SHA-256 hashes: the key itself is shown once, at creation, and never stored."""
from __future__ import annotations

from dataclasses import dataclass


from services.store.db import Conn, Row, execute, fetch_all, insert, now_ts


@dataclass(frozen=True)
class ApiKey:
    id: int
    name: str
    key_hash: str
    read_only: bool
    created_at: int
    revoked_at: int | None

    @classmethod
    def from_row(cls, row: Row) -> ApiKey:
        return cls(row["id"], row["name"], row["key_hash"], bool(row["read_only"]), row["created_at"],
                   row["revoked_at"])


async def add(conn: Conn, *, name: str, key_hash: str, read_only: bool) -> int | None:
    """None when a key of that name exists (revoked ones included: names are never reused, so the audit reads true)."""
    return await insert(conn, "INSERT INTO api_keys (name, key_hash, read_only, created_at) VALUES (?, ?, ?, ?) "
                              "ON CONFLICT DO NOTHING", (name, key_hash, int(read_only), now_ts()))


async def revoke(conn: Conn, name: str) -> bool:
    return await execute(conn, "UPDATE api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
                         (now_ts(), name)) == 1


async def all_keys(conn: Conn) -> list[ApiKey]:
    return [ApiKey.from_row(r) for r in await fetch_all(conn, "SELECT * FROM api_keys ORDER BY id")]


async def active(conn: Conn) -> list[ApiKey]:
    rows = await fetch_all(conn, "SELECT * FROM api_keys WHERE revoked_at IS NULL ORDER BY id")
    return [ApiKey.from_row(r) for r in rows]
