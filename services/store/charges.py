"""Charges and refunds made through the operator API. Their UNIQUE idempotency keys make each one happen once; the
charge row's CHECK keeps the refunded total within the charge."""
from __future__ import annotations

from dataclasses import dataclass


from services.store.db import Conn, Row, execute, fetch_all, fetch_one


@dataclass(frozen=True)
class Charge:
    id: str
    user_id: int
    amount_cents: int
    refunded_cents: int
    description: str
    reference: str | None
    request_hash: str
    balance_after_cents: int
    created_at: int

    @property
    def refundable_cents(self) -> int:
        return self.amount_cents - self.refunded_cents

    @classmethod
    def from_row(cls, row: Row) -> Charge:
        return cls(row["id"], row["user_id"], row["amount_cents"], row["refunded_cents"], row["description"],
                   row["reference"], row["request_hash"], row["balance_after_cents"], row["created_at"])


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    amount_cents: int
    request_hash: str
    balance_after_cents: int
    created_at: int

    @classmethod
    def from_row(cls, row: Row) -> Refund:
        return cls(row["id"], row["charge_id"], row["amount_cents"], row["request_hash"],
                   row["balance_after_cents"], row["created_at"])


async def insert_charge(conn: Conn, charge: Charge, idempotency_key: str) -> bool:
    """Record the charge unless its key was used already (then nothing is written and False comes back)."""
    return await execute(conn, """
        INSERT INTO charges (id, user_id, amount_cents, description, reference, idempotency_key, request_hash,
                             balance_after_cents, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING""",
        (charge.id, charge.user_id, charge.amount_cents, charge.description, charge.reference, idempotency_key,
         charge.request_hash, charge.balance_after_cents, charge.created_at)) == 1


async def get(conn: Conn, charge_id: str) -> Charge | None:
    row = await fetch_one(conn, "SELECT * FROM charges WHERE id = ?", (charge_id,))
    return Charge.from_row(row) if row else None


async def by_key(conn: Conn, idempotency_key: str) -> Charge | None:
    row = await fetch_one(conn, "SELECT * FROM charges WHERE idempotency_key = ?", (idempotency_key,))
    return Charge.from_row(row) if row else None


async def recent_for_user(conn: Conn, user_id: int, limit: int = 5) -> list[Charge]:
    # Ordered by their ledger lines: ids are random, and many charges share a second.
    rows = await fetch_all(conn, "SELECT c.* FROM charges c JOIN ledger l ON l.idempotency_key = 'charge:' || c.id "
                                 "WHERE c.user_id = ? ORDER BY l.id DESC LIMIT ?", (user_id, limit))
    return [Charge.from_row(r) for r in rows]


async def take_refund(conn: Conn, charge_id: str, cents: int) -> bool:
    """Count `cents` more as refunded, only if the charge still covers them: a compare-and-set on the row."""
    return await execute(conn, "UPDATE charges SET refunded_cents = refunded_cents + ? "
                               "WHERE id = ? AND refunded_cents + ? <= amount_cents", (cents, charge_id, cents)) == 1


async def insert_refund(conn: Conn, refund: Refund, idempotency_key: str) -> bool:
    return await execute(conn, """
        INSERT INTO refunds (id, charge_id, amount_cents, idempotency_key, request_hash, balance_after_cents,
                             created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING""",
        (refund.id, refund.charge_id, refund.amount_cents, idempotency_key, refund.request_hash,
         refund.balance_after_cents, refund.created_at)) == 1


async def refund_by_key(conn: Conn, idempotency_key: str) -> Refund | None:
    row = await fetch_one(conn, "SELECT * FROM refunds WHERE idempotency_key = ?", (idempotency_key,))
    return Refund.from_row(row) if row else None


async def refunds_of(conn: Conn, charge_id: str) -> list[Refund]:
    rows = await fetch_all(conn, "SELECT r.* FROM refunds r JOIN ledger l ON l.idempotency_key = 'refund:' || r.id "
                                 "WHERE r.charge_id = ? ORDER BY l.id", (charge_id,))
    return [Refund.from_row(r) for r in rows]
