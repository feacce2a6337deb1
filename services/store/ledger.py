"""The append-only ledger. Its unique idempotency key is what makes every credit happen at most once."""
from __future__ import annotations

from dataclasses import dataclass

from services.store import users
from services.store.db import Conn, fetch_all, fetch_one, fetch_value, insert, now_ts
from services.store.models import LedgerEntry, LedgerKind


async def append(conn: Conn, *, user_id: int, amount_cents: int, kind: LedgerKind,
                 idempotency_key: str, deposit_id: int | None = None, note: str | None = None,
                 actor_id: int | None = None, charge_id: str | None = None, test: bool = False) -> int | None:
    """Add a line unless one with the same key exists. Returns its id, or None if the key was taken."""
    return await insert(
        conn,
        """
        INSERT INTO ledger (user_id, amount_cents, kind, deposit_id, charge_id, idempotency_key, note, actor_id,
                            test, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (idempotency_key) DO NOTHING
        """,
        (user_id, amount_cents, kind.value, deposit_id, charge_id, idempotency_key, note, actor_id, int(test),
         now_ts()),
    )


class InsufficientBalance(Exception):
    def __init__(self, balance_cents: int) -> None:
        super().__init__(f"balance {balance_cents} cents is not enough")
        self.balance_cents = balance_cents


@dataclass(frozen=True)
class BalanceMove:
    entry_id: int | None  # None: a line with this key exists already (a replay); nothing moved now
    balance_cents: int    # the balance after the move (on a replay: the balance now)


async def move_balance(conn: Conn, *, user_id: int, amount_cents: int, kind: LedgerKind, idempotency_key: str,
                       allow_negative: bool = False, deposit_id: int | None = None, note: str | None = None,
                       actor_id: int | None = None, live_only: bool = False) -> BalanceMove | None:
    """Debit (or credit) a balance that is checked first: the user's row is locked, so two debits at once (two
    admins, two API charges, on any number of instances) can't both pass the check on the same balance.

    Idempotent: a key seen before moves nothing and returns entry_id None. Raises InsufficientBalance when a debit
    would take the balance below zero and `allow_negative` is off. None if there is no such user. Call it inside
    the caller's transaction, after locking any deposit involved (lock order: deposit, user, coupon).
    `live_only`: the balance checked (and returned) is real money only, test money left out (a real gateway)."""
    user = await users.lock(conn, user_id)
    if user is None:
        return None
    balance = user.balance_cents
    if live_only:
        live = await live_balance(conn, user_id)
        assert live is not None
        balance = live
    if await fetch_value(conn, "SELECT id FROM ledger WHERE idempotency_key = ?", (idempotency_key,)) is not None:
        return BalanceMove(None, balance)
    if amount_cents < 0 and balance + amount_cents < 0 and not allow_negative:
        raise InsufficientBalance(balance)
    entry_id = await append(conn, user_id=user_id, amount_cents=amount_cents, kind=kind,
                            idempotency_key=idempotency_key, deposit_id=deposit_id, note=note, actor_id=actor_id)
    assert entry_id is not None  # the key was free, and the user's row lock serializes its writers
    return BalanceMove(entry_id, balance + amount_cents)


async def get(conn: Conn, line_id: int) -> LedgerEntry | None:
    row = await fetch_one(conn, "SELECT * FROM ledger WHERE id = ?", (line_id,))
    return LedgerEntry.from_row(row) if row else None


async def live_balance(conn: Conn, user_id: int) -> int | None:
    """The user's real money (test lines left out); None when there is no such user."""
    value = await fetch_value(conn, """
        SELECT u.balance_cents - (SELECT COALESCE(SUM(l.amount_cents), 0) FROM ledger l
                                  WHERE l.user_id = u.id AND l.test = 1)
        FROM users u WHERE u.id = ?""", (user_id,))
    return None if value is None else int(value)


async def live_balance_through(conn: Conn, user_id: int, line_id: int) -> int:
    """The real balance right after line `line_id`: the sum of the user's live lines up to it."""
    return int(await fetch_value(
        conn, "SELECT COALESCE(SUM(amount_cents), 0) FROM ledger WHERE user_id = ? AND test = 0 AND id <= ?",
        (user_id, line_id)))


async def live_page(conn: Conn, user_id: int, *, limit: int,
                    before_id: int | None) -> list[LedgerEntry]:
    """Live lines newest first, below `before_id` when paging on."""
    rows = await fetch_all(
        conn, "SELECT * FROM ledger WHERE user_id = ? AND test = 0 AND id < ? ORDER BY id DESC LIMIT ?",
        (user_id, before_id if before_id is not None else 2**62, limit))
    return [LedgerEntry.from_row(r) for r in rows]


async def test_balances(conn: Conn) -> list[tuple[int, int, int]]:
    """(user id, test money in cents, newest test line) for every user who holds test money."""
    rows = await fetch_all(conn, """
        SELECT user_id, SUM(amount_cents) AS cents, MAX(id) AS last_id FROM ledger WHERE test = 1
        GROUP BY user_id HAVING SUM(amount_cents) <> 0 ORDER BY user_id""")
    return [(r[0], r[1], r[2]) for r in rows]


async def for_user(conn: Conn, user_id: int, limit: int = 20) -> list[LedgerEntry]:
    rows = await fetch_all(conn, "SELECT * FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit))
    return [LedgerEntry.from_row(r) for r in rows]


def charge_key(charge_id: str) -> str:
    return f"charge:{charge_id}"


def refund_key(refund_id: str) -> str:
    return f"refund:{refund_id}"


def deposit_key(deposit_id: int) -> str:
    return f"deposit:{deposit_id}:credit"


def bonus_key(deposit_id: int) -> str:
    return f"deposit:{deposit_id}:bonus"


async def recent_spends(conn: Conn, user_id: int, limit: int = 5) -> list[LedgerEntry]:
    """The user's latest charges and refunds (the operator's API), newest first."""
    rows = await fetch_all(conn, "SELECT * FROM ledger WHERE user_id = ? AND kind IN ('charge', 'refund') "
                                 "ORDER BY id DESC LIMIT ?", (user_id, limit))
    return [LedgerEntry.from_row(r) for r in rows]
