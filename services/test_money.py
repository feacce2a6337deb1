"""Sandbox money is never real money: finding it, telling staff about it, and writing it off.

Every ledger line a sandbox deposit makes is marked test (ledger.test); balances the API, a real gateway's
customers, /stats and the exports use leave those lines out. `sandbox-reset` writes, per user, one reversing line
that is itself test money, so the ledger stays append-only and the balance stays its sum.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.store import Database, LedgerKind
from services.store import admin as audit_log
from services.store import ledger
from services import notifications
from services.api_access import CLI_ACTOR_ID
from services.notifications import AdminTestMoney


@dataclass(frozen=True)
class TestMoney:
    users: int
    cents: int
    last_line_id: int


async def held(db: Database) -> TestMoney | None:
    rows = await ledger.test_balances(db.reader)
    if not rows:
        return None
    return TestMoney(users=len(rows), cents=sum(r[1] for r in rows), last_line_id=max(r[2] for r in rows))


async def warn_once(db: Database, *, admin_chat_id: int) -> bool:
    """Tell the admin chat, once per state of the test money, that the database holds some. True if queued now."""
    money = await held(db)
    if money is None:
        return False
    async with db.transaction() as tx:
        queued = await notifications.queue(tx, AdminTestMoney(money.cents, money.users), chat_id=admin_chat_id,
                                           dedupe_key=f"test-money:{money.last_line_id}")
    return queued is not None


async def reset(db: Database) -> list[tuple[int, int]]:
    """Reverse every user's test money with one audited test line each; returns (user id, cents reversed)."""
    reversed_: list[tuple[int, int]] = []
    async with db.transaction() as tx:
        for user_id, cents, last_id in await ledger.test_balances(tx):
            line = await ledger.append(tx, user_id=user_id, amount_cents=-cents, kind=LedgerKind.ADJUSTMENT,
                                       idempotency_key=f"sandbox-reset:{user_id}:{last_id}", test=True,
                                       note="sandbox-reset: test money written off")
            if line is None:
                continue
            await audit_log.audit(tx, actor_id=CLI_ACTOR_ID, actor_name="cli", action="sandbox_reset",
                                  target=f"user:{user_id}", details={"cents": -cents, "ledger_id": line})
            reversed_.append((user_id, cents))
    return reversed_
