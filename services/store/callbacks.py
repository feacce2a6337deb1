"""Raw gateway callbacks: recorded on arrival, then annotated with how they were judged."""
from __future__ import annotations

import json

from services.store.db import Conn, execute, fetch_all, insert, now_ts


async def record(conn: Conn, *, source: str, peer: str | None, client_ip: str | None,
                 headers: dict[str, str], body: bytes, verdict: str | None = None, http_status: int | None = None,
                 detail: str = "", order_id: str | None = None) -> int:
    """Store a callback as received; with `verdict`, already judged (one statement where record + judge were two)."""
    callback_id = await insert(
        conn,
        "INSERT INTO callbacks (source, received_at, peer, client_ip, headers, body, verdict, http_status, detail, "
        "order_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (source, now_ts(), peer, client_ip, json.dumps(headers), body, verdict, http_status,
         detail[:500] if verdict is not None else None, order_id),
    )
    assert callback_id is not None
    return callback_id


async def judge(conn: Conn, callback_id: int, *, verdict: str, http_status: int, detail: str = "",
                order_id: str | None = None) -> None:
    await execute(conn, "UPDATE callbacks SET verdict = ?, http_status = ?, detail = ?, order_id = ? WHERE id = ?",
                  (verdict, http_status, detail[:500], order_id, callback_id))


async def note_refusals(conn: Conn, *, source: str, reason: str, count: int, client_ip: str | None,
                        samples: list[dict[str, object]]) -> None:
    """Add `count` refusals to the one row kept per endpoint and reason, with the latest few bodies."""
    now = now_ts()
    await execute(
        conn,
        """
        INSERT INTO callback_refusals (source, reason, refused, first_at, last_at, last_ip, samples)
        VALUES (?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (source, reason) DO UPDATE SET refused = callback_refusals.refused + excluded.refused,
            last_at = excluded.last_at, last_ip = excluded.last_ip, samples = excluded.samples
        """,
        (source, reason, count, now, now, client_ip, json.dumps(samples)),
    )


async def refusals(conn: Conn) -> list[dict[str, object]]:
    rows = await fetch_all(conn, "SELECT * FROM callback_refusals ORDER BY source, reason")
    return [{**dict(r), "samples": json.loads(r["samples"])} for r in rows]
