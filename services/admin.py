"""What the operator's staff can do: find things, move money with a second tap, and leave an audit trail.

Every money move is one transaction: the second tap is taken (same admin, in time, once), the balance is
checked, the ledger line is written under a key derived from that tap, and the audit entry is written.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from enum import Enum
from typing import Any

from services.gateways.base import PaymentState, PaymentUpdate
from services.operator_events import OperatorEvents
from services.settlement import Settlement, Settler
from services.store import Database, Deposit, DepositStatus, LedgerKind, User, now_ts
from services.store import admin as admin_repo
from services import notifications
from services.notifications import BalanceAdjusted
from services.store import charges, deposits, ledger, users
from services.store.db import fetch_all, retry_on_deadlock


@dataclass(frozen=True)
class Actor:
    id: int
    name: str


class AdminProblem(str, Enum):
    """Why an admin action was refused; the value is a message key suffix."""

    USER_NOT_FOUND = "user-not-found"
    USER_AMBIGUOUS = "user-ambiguous"   # more than one known user carried that @username: ask for the id
    DEPOSIT_NOT_FOUND = "deposit-not-found"
    BELOW_ZERO = "below-zero"
    NOT_MANUAL = "not-manual"
    CONFIRM_UNKNOWN = "confirm-unknown"
    CONFIRM_OTHER_ADMIN = "confirm-other-admin"
    CONFIRM_EXPIRED = "confirm-expired"
    CONFIRM_USED = "confirm-used"


class AdminError(Exception):
    def __init__(self, problem: AdminProblem, **details: Any) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.details = details


@dataclass(frozen=True)
class PendingAction:
    token: str
    action: str
    payload: dict[str, Any]


class AdminService:
    def __init__(self, db: Database, settler: Settler, *, allow_negative_balance: bool, confirm_seconds: int,
                 sandbox: bool = False, events: OperatorEvents | None = None) -> None:
        self.db = db
        self._settler = settler
        self._allow_negative = allow_negative_balance
        self.confirm_seconds = confirm_seconds
        self.sandbox = sandbox  # which balance staff and customers see: with test money, or real money only
        self._events = events or OperatorEvents(enabled=False)

    @property
    def allows_negative_balance(self) -> bool:
        """ALLOW_NEGATIVE_BALANCE: whether a debit may take a balance below zero."""
        return self._allow_negative

    # --- finding things ---

    async def find_user(self, query: str) -> User:
        """A user by Telegram id or @username; the same 'not found' for anything else."""
        text = query.strip()
        user = None
        if text.lstrip("-").isdigit() and len(text) < 20:
            user = await users.get(self.db.reader, int(text))
        elif text.startswith("@") and 1 < len(text) <= 33:
            holders = await users.by_username(self.db.reader, text[1:])
            if len(holders) > 1:
                raise AdminError(AdminProblem.USER_AMBIGUOUS, query=text[:40], candidates=holders)
            user = holders[0] if holders else None
        if user is None:
            raise AdminError(AdminProblem.USER_NOT_FOUND, query=text[:40])
        return user

    async def deposit(self, deposit_id: int) -> Deposit:
        found = await deposits.get(self.db.reader, deposit_id) if 0 < deposit_id < 2**63 else None
        if found is None:
            raise AdminError(AdminProblem.DEPOSIT_NOT_FOUND, query=str(deposit_id))
        return found

    # --- the second tap ---

    async def ask(self, actor: Actor, action: str, payload: dict[str, Any]) -> str:
        async with self.db.transaction() as tx:
            return await admin_repo.ask_confirmation(tx, actor_id=actor.id, action=action, payload=payload,
                                                     ttl_seconds=self.confirm_seconds)

    async def pending(self, token: str, actor: Actor) -> PendingAction:
        """The action waiting for this tap, if this admin may still confirm it (checked again when taken)."""
        row = await admin_repo.confirmation(self.db.reader, token)
        if row is None:
            raise AdminError(AdminProblem.CONFIRM_UNKNOWN)
        if row["actor_id"] != actor.id:
            raise AdminError(AdminProblem.CONFIRM_OTHER_ADMIN)
        if row["used_at"] is not None:
            raise AdminError(AdminProblem.CONFIRM_USED)
        if row["expires_at"] <= now_ts():
            raise AdminError(AdminProblem.CONFIRM_EXPIRED)
        return PendingAction(token, row["action"], json.loads(row["payload"]))

    async def take(self, pending: PendingAction, actor: Actor) -> None:
        """Spend the tap for an action that does its own I/O (a payout): once, by this admin, in time."""
        async with self.db.transaction() as tx:
            if not await admin_repo.use_confirmation(tx, pending.token, actor.id):
                raise AdminError(AdminProblem.CONFIRM_USED)

    # --- money ---

    @retry_on_deadlock
    async def adjust_balance(self, actor: Actor, pending: PendingAction) -> int:
        """Credit or debit as confirmed; returns the new balance. Never below zero unless the operator allows it."""
        user_id = int(pending.payload["user_id"])
        cents = int(pending.payload["cents"])
        reason = str(pending.payload["reason"])
        async with self.db.transaction() as tx:
            if not await admin_repo.use_confirmation(tx, pending.token, actor.id):
                raise AdminError(AdminProblem.CONFIRM_USED)
            try:  # checked against the balance with the user's row locked: two debits at once can't both pass
                move = await ledger.move_balance(tx, user_id=user_id, amount_cents=cents, kind=LedgerKind.ADJUSTMENT,
                                                 idempotency_key=f"admin:{pending.token}", note=reason,
                                                 actor_id=actor.id, allow_negative=self._allow_negative,
                                                 live_only=not self.sandbox)
            except ledger.InsufficientBalance as exc:
                raise AdminError(AdminProblem.BELOW_ZERO, balance=exc.balance_cents) from None
            if move is None:
                raise AdminError(AdminProblem.USER_NOT_FOUND, query=str(user_id))
            await self._events.balance_changed(tx, move.entry_id)
            await admin_repo.audit(tx, actor_id=actor.id, actor_name=actor.name, action=pending.action,
                                   target=f"user:{user_id}", details={"cents": cents}, reason=reason)
            fresh = await users.get(tx, user_id)
            assert fresh is not None
            # The user hears of it through the outbox: retried until delivered, and only if this commits.
            shown = fresh.balance_shown(sandbox=self.sandbox)
            await notifications.queue(tx, BalanceAdjusted(fresh, cents, reason, shown), chat_id=user_id,
                                      user_id=user_id, dedupe_key=f"admin:{pending.token}:notify")
        return shown

    async def confirm_payment(self, actor: Actor, pending: PendingAction) -> Settlement:
        """A payment staff saw arrive (a card payment): settled like any other report, through settle_payment."""
        deposit = await self.deposit(int(pending.payload["deposit_id"]))
        if deposit.order_id is None or deposit.status is DepositStatus.PAID:
            raise AdminError(AdminProblem.NOT_MANUAL)
        await self.take(pending, actor)
        result = await self._settler.settle_payment(PaymentUpdate(
            gateway=deposit.gateway, order_id=deposit.order_id, state=PaymentState.PAID, source="admin",
            note=f"confirmed by {actor.name} ({actor.id})"))
        async with self.db.transaction() as tx:
            await admin_repo.audit(tx, actor_id=actor.id, actor_name=actor.name, action="confirm_payment",
                                   target=f"deposit:{deposit.id}", details={"outcome": result.outcome.value},
                                   reason=str(pending.payload.get("reason") or ""))
        return result

    async def record(self, actor: Actor, action: str, target: str | None, details: dict[str, Any] | None = None,
                     reason: str | None = None) -> None:
        """Audit an action that moves no money (coupons, rechecks, cancels)."""
        async with self.db.transaction() as tx:
            await admin_repo.audit(tx, actor_id=actor.id, actor_name=actor.name, action=action, target=target,
                                   details=details, reason=reason)

    async def recent_actions(self, limit: int = 20) -> list[admin_repo.AuditEntry]:
        return await admin_repo.recent_actions(self.db.reader, limit)

    async def recent_ledger(self, user_id: int, limit: int = 10) -> list[Any]:
        return await ledger.for_user(self.db.reader, user_id, limit)

    async def recent_charges(self, user_id: int, limit: int = 5) -> list[charges.Charge]:
        return await charges.recent_for_user(self.db.reader, user_id, limit)

    async def recent_deposits(self, user_id: int, limit: int = 5) -> list[Deposit]:
        rows = await fetch_all(self.db.reader, "SELECT * FROM deposits WHERE user_id = ? ORDER BY id DESC LIMIT ?",
                               (user_id, limit))
        return [Deposit.from_row(r) for r in rows]
