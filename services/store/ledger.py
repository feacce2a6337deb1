"""The append-only ledger. Its unique idempotency key is what makes every credit happen at most once."""
from __future__ import annotations

from dataclasses import dataclass

from services.store import users
from services.store.db import Conn, fetch_all, fetch_value, insert, now_ts
from services.store.models import LedgerEntry, LedgerKind


async def append(conn: Conn, *, user_id: int, amount_cents: int, kind: LedgerKind,
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
                       actor_id: int | None = None) -> BalanceMove | None:
    """Debit (or credit) a balance that is checked first: the user's row is locked, so two debits at once (two
    admins, two API charges, on any number of instances) can't both pass the check on the same balance.

    Idempotent: a key seen before moves nothing and returns entry_id None. Raises InsufficientBalance when a debit
    would take the balance below zero and `allow_negative` is off. None if there is no such user. Call it inside
    the caller's transaction, after locking any deposit involved (lock order: deposit, user, coupon)."""
    user = await users.lock(conn, user_id)
    if user is None:
        return None
    if await fetch_value(conn, "SELECT id FROM ledger WHERE idempotency_key = ?", (idempotency_key,)) is not None:
        return BalanceMove(None, user.balance_cents)
    if amount_cents < 0 and user.balance_cents + amount_cents < 0 and not allow_negative:
        raise InsufficientBalance(user.balance_cents)
    entry_id = await append(conn, user_id=user_id, amount_cents=amount_cents, kind=kind,
                            idempotency_key=idempotency_key, deposit_id=deposit_id, note=note, actor_id=actor_id)
    assert entry_id is not None  # the key was free, and the user's row lock serializes its writers
    return BalanceMove(entry_id, user.balance_cents + amount_cents)


async def for_user(conn: Conn, user_id: int, limit: int = 20) -> list[LedgerEntry]:
    rows = await fetch_all(conn, "SELECT * FROM ledger WHERE user_id = ? ORDER BY id DESC LIMIT ?", (user_id, limit))
    return [LedgerEntry.from_row(r) for r in rows]


def deposit_key(deposit_id: int) -> str:
    return f"deposit:{deposit_id}:credit"


def bonus_key(deposit_id: int) -> str:
    return f"deposit:{deposit_id}:bonus"
