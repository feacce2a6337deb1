"""Read-only reports on deposits for the admin chat: stats, the pending list, search and the CSV export.

Everything is computed in SQL (aggregates, LIMITs, indexed look-ups), so the cost follows the rows asked for,
not the size of the table; only the export walks its rows, streaming them from the cursor.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from services.store import Database, Deposit
from services.store.db import Row, fetch_all, fetch_one, fetch_value

PERIODS = ("today", "7d", "30d", "all")
_DAY = 24 * 60 * 60
_EXPORT_CHUNK = 1000

# A deposit with its user's names and its coupon's code, in one query.
_DEPOSIT_ROW = """
    SELECT d.*, u.username AS user_username, u.first_name AS user_first_name, c.code AS coupon_code
    FROM deposits d
    LEFT JOIN users u ON u.id = d.user_id
    LEFT JOIN coupons c ON c.id = d.coupon_id
"""

# SQLite uses a partial index only when the query repeats the index's own condition: this one is deposits_open's.
_PENDING = "d.status IN ('creating', 'pending', 'expired', 'cancelled') AND d.status = 'pending'"

EXPORT_COLUMNS = ("id", "created_at", "user_id", "username", "gateway", "method", "coin", "network", "amount_usd",
                  "status", "credited_usd", "bonus_usd", "order_id", "txid", "address")


def period_start(name: str, now: int) -> int | None:
    """The first second of a period ending now: today is since 00:00 UTC; None for all time."""
    if name == "today":
        return now - now % _DAY
    if name == "7d":
        return now - 7 * _DAY
    if name == "30d":
        return now - 30 * _DAY
    if name == "all":
        return None
    raise ValueError(f"unknown period {name!r}; expected one of {', '.join(PERIODS)}")


@dataclass(frozen=True)
class DepositRow:
    """A deposit as staff look at it: with who made it and which coupon it carries."""

    deposit: Deposit
    username: str | None
    first_name: str
    coupon_code: str | None

    @classmethod
    def from_row(cls, row: Row) -> DepositRow:
        return cls(Deposit.from_row(row), row["user_username"], row["user_first_name"] or "", row["coupon_code"])


@dataclass(frozen=True)
class PairSum:
    coin: str
    network: str
    paid: int
    credited_cents: int
    bonus_cents: int


@dataclass(frozen=True)
class Stats:
    """Deposits that reached the gateway in a period (by creation time), and what became of them."""

    created: int
    paid: int
    pending: int
    expired: int
    cancelled: int
    failed: int
    credited_cents: int
    bonus_cents: int
    by_pair: tuple[PairSum, ...]

    @property
    def conversion(self) -> float | None:
        """Paid / created, as a fraction; None when nothing was created."""
        return self.paid / self.created if self.created else None


@dataclass(frozen=True)
class CsvExport:
    data: bytes
    rows: int


def _created_since(since_ts: int | None, include_test: bool) -> tuple[str, tuple[int, ...]]:
    """The period filter ('all' has none, so that it scans the table once instead of walking an index), and
    live money only unless the sandbox is running (then everything is test money, and staff see it)."""
    live = "" if include_test else " AND d.test = 0"
    return (live, ()) if since_ts is None else (live + " AND d.created_at >= ?", (since_ts,))


async def stats(db: Database, since_ts: int | None, *, include_test: bool = False) -> Stats:
    since, params = _created_since(since_ts, include_test)
    totals = await fetch_one(db.reader, f"""
        SELECT COUNT(*) AS created,
               COALESCE(SUM(CASE WHEN d.status = 'paid' THEN 1 ELSE 0 END), 0) AS paid,
               COALESCE(SUM(CASE WHEN d.status = 'pending' THEN 1 ELSE 0 END), 0) AS pending,
               COALESCE(SUM(CASE WHEN d.status = 'expired' THEN 1 ELSE 0 END), 0) AS expired,
               COALESCE(SUM(CASE WHEN d.status = 'cancelled' THEN 1 ELSE 0 END), 0) AS cancelled,
               COALESCE(SUM(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END), 0) AS failed,
               COALESCE(SUM(d.credited_cents), 0) AS credited,
               COALESCE(SUM(d.bonus_cents), 0) AS bonus
        FROM deposits d
        WHERE d.order_id IS NOT NULL{since}
    """, params)
    assert totals is not None
    pairs = await fetch_all(db.reader, f"""
        SELECT d.coin, d.network, COUNT(*) AS paid, SUM(d.credited_cents) AS credited,
               COALESCE(SUM(d.bonus_cents), 0) AS bonus
        FROM deposits d
        WHERE d.status = 'paid'{since}
        GROUP BY d.coin, d.network
        ORDER BY credited DESC, d.coin, d.network
    """, params)
    return Stats(created=totals["created"], paid=totals["paid"], pending=totals["pending"],
                 expired=totals["expired"], cancelled=totals["cancelled"], failed=totals["failed"],
                 credited_cents=totals["credited"], bonus_cents=totals["bonus"],
                 by_pair=tuple(PairSum(r["coin"], r["network"], r["paid"], r["credited"], r["bonus"])
                               for r in pairs))


async def deposit_row(db: Database, deposit_id: int) -> DepositRow | None:
    if not 0 < deposit_id < 2**63:  # SQLite can't even look it up
        return None
    row = await fetch_one(db.reader, f"{_DEPOSIT_ROW} WHERE d.id = ?", (deposit_id,))
    return DepositRow.from_row(row) if row else None


async def pending(db: Database, limit: int) -> tuple[list[DepositRow], int]:
    """The newest pending deposits, at most `limit`, and how many are pending in all."""
    rows = await fetch_all(db.reader, f"{_DEPOSIT_ROW} WHERE {_PENDING} ORDER BY d.id DESC LIMIT ?", (limit,))
    total = await fetch_value(db.reader, f"SELECT COUNT(*) FROM deposits d WHERE {_PENDING}")
    return [DepositRow.from_row(r) for r in rows], int(total)


async def find_deposits(db: Database, query: str, limit: int) -> list[DepositRow]:
    """Deposits whose txid, address or order id is exactly `query`, newest first."""
    rows = await fetch_all(db.reader, f"""
        {_DEPOSIT_ROW}
        WHERE d.txid = ?1 OR d.address = ?1 OR d.order_id = ?1
        ORDER BY d.id DESC LIMIT ?2
    """, (query, limit))
    return [DepositRow.from_row(r) for r in rows]


async def export_csv(db: Database, since_ts: int | None, *, include_test: bool = False) -> CsvExport:
    """Every deposit created in the period, oldest first; amounts in USD with two decimals, times ISO 8601 UTC.

    The database formats every value (in integers, so no float touches money), so the event loop only joins the rows:
    a year of deposits must not stall the bot while it is written.
    """
    since, params = _created_since(since_ts, include_test)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    count = 0
    async with db.separate_reader() as conn:
        usd = _usd_sqlite if conn.dialect == "sqlite" else _usd_postgresql
        rows = conn.stream(f"""
            SELECT d.id, {_ISO_UTC[conn.dialect]}, d.user_id, u.username,
                   d.gateway, d.method, d.coin, d.network, {usd("d.amount_cents")}, d.status,
                   {usd("d.credited_cents")}, {usd("d.bonus_cents")}, d.order_id, d.txid, d.address
            FROM deposits d LEFT JOIN users u ON u.id = d.user_id
            WHERE 1 = 1{since}
            ORDER BY d.created_at, d.id
        """, params, chunk=_EXPORT_CHUNK)
        async for chunk in rows:  # in chunks: the event loop gets turns in between
            writer.writerows(chunk)  # NULL is written as an empty field
            count += len(chunk)
    return CsvExport(buffer.getvalue().encode("utf-8"), count)


# The two engines' spellings of the same text, so the file is byte for byte the same on either.
_ISO_UTC = {
    "sqlite": "strftime('%Y-%m-%dT%H:%M:%S+00:00', d.created_at, 'unixepoch')",
    "postgresql": """to_char(to_timestamp(d.created_at) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"')""",
}


def _usd_sqlite(column: str) -> str:
    """SQL for cents as dollars with two decimals (`1234` -> `12.34`), NULL staying NULL; amounts are never negative."""
    return f"({column} / 100) || '.' || printf('%02d', {column} % 100)"


def _usd_postgresql(column: str) -> str:
    return f"({column} / 100)::text || '.' || lpad(({column} % 100)::text, 2, '0')"
