"""Deposits: created in two steps (reserve locally, then record the gateway's answer)."""
from __future__ import annotations

from decimal import Decimal

from services.store.db import Conn, execute, fetch_all, fetch_one, fetch_value, insert, now_ts
from services.store.models import Deposit, DepositStatus

# Repeating the partial index's condition lets SQLite use deposits_open instead of reading the whole table.
_OPEN = "status IN ('creating', 'pending', 'expired', 'cancelled')"


async def reserve(conn: Conn, *, user_id: int, chat_id: int, gateway: str, coin: str,
                  network: str, amount_cents: int, coupon_id: int | None, gateway_coupon: str | None,
                  method: str = "wallet", message: tuple[int, int] | None = None) -> int:
    """`message` (chat id, message id): the "Creating your deposit..." message, edited if the creation is lost."""
    now = now_ts()
    message_chat_id, message_id = message if message is not None else (None, None)
    deposit_id = await insert(
        conn,
        """
        INSERT INTO deposits (user_id, chat_id, gateway, status, coin, network, amount_cents, coupon_id,
                              gateway_coupon, method, message_chat_id, message_id, test, created_at, updated_at)
        VALUES (?, ?, ?, 'creating', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
        """,
        # The sandbox's deposits are test money from the start: nothing they credit is ever real.
        (user_id, chat_id, gateway, coin, network, amount_cents, coupon_id, gateway_coupon, method,
         message_chat_id, message_id, int(gateway == "sandbox"), now, now),
    )
    assert deposit_id is not None
    return deposit_id


async def mark_created(conn: Conn, deposit_id: int, *, order_id: str, address: str | None,
                       pay_amount: Decimal | None, pay_currency: str, expires_at: int, payment_url: str | None,
                       quoted_cents: int | None, first_check_at: int) -> bool:
    """False if the deposit is no longer being created (the user abandoned it meanwhile): nothing is written."""
    return 1 == await execute(
        conn,
        """
        UPDATE deposits SET status = 'pending', order_id = ?, address = ?, pay_amount = ?, pay_currency = ?,
               expires_at = ?, payment_url = ?, quoted_cents = ?, next_check_at = ?, updated_at = ?
        WHERE id = ? AND status = 'creating'
        """,
        (order_id, address, None if pay_amount is None else str(pay_amount), pay_currency, expires_at, payment_url,
         quoted_cents, first_check_at, now_ts(), deposit_id),
    )


async def record_late_order(conn: Conn, deposit_id: int, order_id: str) -> None:
    """Keep the gateway's order for a deposit abandoned while it was being created, for the operator's trail."""
    await execute(conn, "UPDATE deposits SET order_id = ?, updated_at = ? WHERE id = ? AND order_id IS NULL",
                  (order_id, now_ts(), deposit_id))


async def get(conn: Conn, deposit_id: int) -> Deposit | None:
    row = await fetch_one(conn, "SELECT * FROM deposits WHERE id = ?", (deposit_id,))
    return Deposit.from_row(row) if row else None


async def lock(conn: Conn, deposit_id: int) -> Deposit | None:
    """Read the deposit and lock its row until the transaction ends (PostgreSQL; SQLite's writer holds it anyway).
    Every transaction that changes a deposit takes this lock first: deposit, then user, then coupon."""
    row = await fetch_one(conn, f"SELECT * FROM deposits WHERE id = ?{conn.for_update}", (deposit_id,))
    return Deposit.from_row(row) if row else None


async def lock_by_order(conn: Conn, gateway: str, order_id: str) -> Deposit | None:
    """`lock`, found by the gateway's reference."""
    row = await fetch_one(conn, f"SELECT * FROM deposits WHERE gateway = ? AND order_id = ?{conn.for_update}",
                          (gateway, order_id))
    return Deposit.from_row(row) if row else None


async def by_order(conn: Conn, gateway: str, order_id: str) -> Deposit | None:
    row = await fetch_one(conn, "SELECT * FROM deposits WHERE gateway = ? AND order_id = ?", (gateway, order_id))
    return Deposit.from_row(row) if row else None


async def set_status(conn: Conn, deposit_id: int, status: DepositStatus, *,
                     only_from: tuple[DepositStatus, ...], failure_reason: str | None = None) -> bool:
    """Move a deposit between states, only from the listed ones: a compare-and-set, so races can't undo a payment."""
    placeholders = ",".join("?" for _ in only_from)
    changed = await execute(
        conn,
        f"""
        UPDATE deposits SET status = ?, failure_reason = COALESCE(?, failure_reason), updated_at = ?
        WHERE id = ? AND status IN ({placeholders})
        """,
        (status.value, failure_reason, now_ts(), deposit_id, *(s.value for s in only_from)),
    )
    return changed == 1


async def mark_paid(conn: Conn, deposit_id: int, *, credited_cents: int, bonus_cents: int,
                    txid: str | None) -> Deposit:
    """The deposit as paid, read back by the same statement (RETURNING): no second look-up."""
    now = now_ts()
    row = await fetch_one(
        conn,
        """
        UPDATE deposits SET status = 'paid', credited_cents = ?, bonus_cents = ?, txid = COALESCE(?, txid),
               paid_at = ?, next_check_at = NULL, updated_at = ?
        WHERE id = ? RETURNING *
        """,
        (credited_cents, bonus_cents, txid, now, now, deposit_id),
    )
    assert row is not None, f"deposit {deposit_id} vanished inside its own transaction"
    return Deposit.from_row(row)


async def mark_seen(conn: Conn, deposit_id: int) -> bool:
    """Record, once, that the payment was seen on chain; True if this call recorded it."""
    return 1 == await execute(conn, "UPDATE deposits SET seen_at = ?, updated_at = ? "
                                    "WHERE id = ? AND status = 'pending' AND seen_at IS NULL",
                              (now_ts(), now_ts(), deposit_id))


async def attach_message(conn: Conn, deposit_id: int, chat_id: int, message_id: int) -> None:
    await execute(conn, "UPDATE deposits SET message_chat_id = ?, message_id = ? WHERE id = ?",
                  (chat_id, message_id, deposit_id))


async def schedule_check(conn: Conn, deposit_id: int, *, next_check_at: int | None,
                         failed: bool) -> None:
    await execute(
        conn,
        """
        UPDATE deposits SET next_check_at = ?, last_checked_at = ?,
               check_failures = CASE WHEN ? THEN check_failures + 1 ELSE 0 END
        WHERE id = ? AND status IN ('pending', 'expired', 'cancelled')
        """,
        (next_check_at, now_ts(), failed, deposit_id),
    )


async def for_user(conn: Conn, user_id: int, *, limit: int, offset: int) -> list[Deposit]:
    """The user's deposits that reached the gateway, newest first."""
    rows = await fetch_all(
        conn,
        "SELECT * FROM deposits WHERE user_id = ? AND order_id IS NOT NULL ORDER BY id DESC LIMIT ? OFFSET ?",
        (user_id, limit, offset),
    )
    return [Deposit.from_row(r) for r in rows]


async def count_for_user(conn: Conn, user_id: int) -> int:
    return int(await fetch_value(
        conn, "SELECT COUNT(*) FROM deposits WHERE user_id = ? AND order_id IS NOT NULL", (user_id,)))


async def lease_due_for_check(conn: Conn, now: int, *, lease_seconds: int,
                              limit: int = 200) -> list[Deposit]:
    """Take the deposits due for a poll, moving their next check `lease_seconds` ahead, in the caller's transaction.

    Several instances poll at once: SKIP LOCKED hands each due deposit to one of them, and the moved check time keeps
    the others off it after the commit. The poll then sets the real next time; if the poller dies instead, the
    deposit comes back when the lease ends.
    """
    skip_locked = " FOR UPDATE SKIP LOCKED" if conn.dialect == "postgresql" else ""
    rows = await fetch_all(
        conn,
        f"""
        UPDATE deposits SET next_check_at = ?
        WHERE id IN (SELECT id FROM deposits
                     WHERE status IN ('pending', 'expired', 'cancelled') AND next_check_at IS NOT NULL
                           AND next_check_at <= ?
                     ORDER BY next_check_at LIMIT ?{skip_locked})
        RETURNING *
        """,
        (now + lease_seconds, now, limit),
    )
    return sorted((Deposit.from_row(r) for r in rows), key=lambda d: (d.next_check_at or 0, d.id))


async def pending_past_expiry(conn: Conn, now: int) -> list[Deposit]:
    rows = await fetch_all(
        conn, f"SELECT * FROM deposits WHERE {_OPEN} AND status = 'pending' AND expires_at IS NOT NULL "
        "AND expires_at <= ?", (now,))
    return [Deposit.from_row(r) for r in rows]


async def pending_with_cards(conn: Conn, now: int) -> list[Deposit]:
    """Deposits waiting for payment, still valid, whose card was sent: their countdown is kept true."""
    rows = await fetch_all(
        conn, f"SELECT * FROM deposits WHERE {_OPEN} AND status = 'pending' AND expires_at > ? "
        "AND message_id IS NOT NULL", (now,))
    return [Deposit.from_row(r) for r in rows]


async def stale_creating(conn: Conn, older_than: int) -> list[Deposit]:
    rows = await fetch_all(conn, f"SELECT * FROM deposits WHERE {_OPEN} AND status = 'creating' AND created_at <= ?",
                           (older_than,))
    return [Deposit.from_row(r) for r in rows]


async def count_pending(conn: Conn) -> int:
    return int(await fetch_value(conn, f"SELECT COUNT(*) FROM deposits WHERE {_OPEN} AND status = 'pending'"))


async def count_open_for_user(conn: Conn, user_id: int) -> int:
    """Deposits of this user still being created or waiting for payment."""
    return int(await fetch_value(
        conn, f"SELECT COUNT(*) FROM deposits WHERE {_OPEN} AND status IN ('creating', 'pending') AND user_id = ?",
        (user_id,)))


async def count_waiting_for_user(conn: Conn, user_id: int) -> int:
    """Deposits of this user shown with an address or a page and not paid yet."""
    return int(await fetch_value(
        conn, f"SELECT COUNT(*) FROM deposits WHERE {_OPEN} AND status = 'pending' AND user_id = ?", (user_id,)))


async def count_started_since(conn: Conn, user_id: int, since: int) -> int:
    """Every attempt counts, failed ones too: each one cost a call to the gateway."""
    return int(await fetch_value(
        conn, "SELECT COUNT(*) FROM deposits WHERE user_id = ? AND created_at >= ?", (user_id, since)))


async def note_hold(conn: Conn, deposit_id: int, reason: str) -> None:
    """Why a payment report on this deposit is held for a person (shown by /deposit); the status is left as it is."""
    await execute(conn, "UPDATE deposits SET failure_reason = ?, updated_at = ? WHERE id = ? AND status <> 'paid'",
                  (reason, now_ts(), deposit_id))


async def live_page(conn: Conn, *, status: str | None, user_id: int | None, limit: int,
                    before_id: int | None) -> list[Deposit]:
    """Real (non-sandbox) deposits that reached the gateway, newest first, for the operator API."""
    where = ["test = 0", "order_id IS NOT NULL", "id < ?"]
    params: list[object] = [before_id if before_id is not None else 2**62]
    if status is not None:
        where.append("status = ?")
        params.append(status)
    if user_id is not None:
        where.append("user_id = ?")
        params.append(user_id)
    rows = await fetch_all(conn, f"SELECT * FROM deposits WHERE {' AND '.join(where)} ORDER BY id DESC LIMIT ?",
                           (*params, limit))
    return [Deposit.from_row(r) for r in rows]
