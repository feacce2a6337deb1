"""The bot's own coupons and the per-deposit holds that make "once per user" and "N uses" exact."""
from __future__ import annotations

from services.store.db import Conn, execute, fetch_all, fetch_one, insert, now_ts
from services.store.models import Coupon, CouponKind


async def create(conn: Conn, *, code: str, kind: CouponKind, value: int, max_uses: int | None = None,
                 min_amount_cents: int = 0, expires_at: int | None = None, created_by: int | None = None) -> int | None:
    return await insert(
        conn,
        """
        INSERT INTO coupons (code, kind, value, max_uses, min_amount_cents, expires_at, created_by, created_at)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING
        """,
        (code, kind.value, value, max_uses, min_amount_cents, expires_at, created_by, now_ts()),
    )


async def by_code(conn: Conn, code: str) -> Coupon | None:
    row = await fetch_one(conn, "SELECT * FROM coupons WHERE lower(code) = lower(?)", (code,))
    return Coupon.from_row(row) if row else None


async def get(conn: Conn, coupon_id: int) -> Coupon | None:
    row = await fetch_one(conn, "SELECT * FROM coupons WHERE id = ?", (coupon_id,))
    return Coupon.from_row(row) if row else None


async def set_active(conn: Conn, code: str, active: bool) -> bool:
    return await execute(conn, "UPDATE coupons SET active = ? WHERE lower(code) = lower(?)", (int(active), code)) == 1


async def all_coupons(conn: Conn) -> list[Coupon]:
    return [Coupon.from_row(r) for r in await fetch_all(conn, "SELECT * FROM coupons ORDER BY id DESC")]


async def user_has_used(conn: Conn, coupon_id: int, user_id: int) -> bool:
    row = await fetch_one(conn, "SELECT 1 FROM coupon_holds WHERE coupon_id = ? AND user_id = ?", (coupon_id, user_id))
    return row is not None


async def take_use(conn: Conn, coupon_id: int) -> bool:
    """Count one use, unless the limit is reached: a conditional update, so two users can't take the last use."""
    return await execute(
        conn,
        "UPDATE coupons SET used_count = used_count + 1 WHERE id = ? AND (max_uses IS NULL OR used_count < max_uses)",
        (coupon_id,),
    ) == 1


async def hold(conn: Conn, coupon_id: int, user_id: int, deposit_id: int) -> bool:
    """Hold a coupon for a deposit. False if this user already holds or redeemed it (the UNIQUE constraint)."""
    return await insert(
        conn,
        """
        INSERT INTO coupon_holds (coupon_id, user_id, deposit_id, state, created_at) VALUES (?, ?, ?, 'held', ?)
        ON CONFLICT DO NOTHING
        """,
        (coupon_id, user_id, deposit_id, now_ts()),
    ) is not None


async def hold_for_deposit(conn: Conn, deposit_id: int) -> tuple[int, str] | None:
    row = await fetch_one(conn, "SELECT coupon_id, state FROM coupon_holds WHERE deposit_id = ?", (deposit_id,))
    return (row["coupon_id"], row["state"]) if row else None


async def redeem(conn: Conn, deposit_id: int, bonus_cents: int) -> None:
    await execute(conn, "UPDATE coupon_holds SET state = 'redeemed', bonus_cents = ? WHERE deposit_id = ?",
                  (bonus_cents, deposit_id))


async def release(conn: Conn, deposit_id: int) -> bool:
    """Give back a held (never a redeemed) coupon when its deposit ends unpaid. The use is counted back only when
    this call removed the hold (DELETE ... RETURNING), so releasing twice (expired, then cancelled; or two
    transactions at once on PostgreSQL, where the second waits for the row and then deletes nothing) gives back one."""
    row = await fetch_one(conn, "DELETE FROM coupon_holds WHERE deposit_id = ? AND state = 'held' RETURNING coupon_id",
                          (deposit_id,))
    if row is None:
        return False
    await execute(conn, "UPDATE coupons SET used_count = used_count - 1 WHERE id = ? AND used_count > 0",
                  (row["coupon_id"],))
    return True
