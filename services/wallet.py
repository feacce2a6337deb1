"""The wallet the operator's service spends from: charges and refunds, each a line in the append-only ledger.

Guarantees (each with a constraint behind it and a concurrent test in tests/test_wallet.py):
- one charge per Idempotency-Key, ever (charges.idempotency_key UNIQUE); the same key and the same request get
  the first answer again, the same key with another request is refused and changes nothing;
- a charge never takes the live balance below zero: it is checked with the user's row locked, in the transaction
  that writes the line (ALLOW_NEGATIVE_BALANCE does not apply here), and test money is never spendable;
- refunds never give back more than was charged (charges CHECK refunded_cents <= amount_cents, moved by a
  compare-and-set), one per Idempotency-Key (refunds.idempotency_key UNIQUE);
- the balance stays the sum of the ledger (the ledger trigger); the customer's message and the operator's events
  are written in the same transaction, so a crash leaves all of them or none.
"""
from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from services import notifications
from services.notifications import BalanceCharged, BalanceRefunded
from services.operator_events import OperatorEvents
from services.store import Database, Deposit, LedgerEntry, LedgerKind, User, now_ts
from services.store import charges, deposits, ledger, users
from services.store.charges import Charge, Refund
from services.store.db import Conn


class WalletProblem(str, Enum):
    USER_NOT_FOUND = "user_not_found"
    CHARGE_NOT_FOUND = "charge_not_found"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    REFUND_EXCEEDS_CHARGE = "refund_exceeds_charge"


class WalletError(Exception):
    def __init__(self, problem: WalletProblem, *, balance_cents: int | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.balance_cents = balance_cents


@dataclass(frozen=True)
class ChargeResult:
    charge: Charge
    replayed: bool


@dataclass(frozen=True)
class RefundResult:
    refund: Refund
    replayed: bool


def request_hash(*parts: Any) -> str:
    """What a request asked for, so that a reused Idempotency-Key can tell a retry from a different request."""
    return hashlib.sha256(json.dumps(parts, separators=(",", ":")).encode()).hexdigest()


class Wallet:
    def __init__(self, db: Database, events: OperatorEvents, *, notify_customers: bool = True) -> None:
        self._db = db
        self._events = events
        self._notify = notify_customers
        # Called after a transaction that queued messages or events commits (the delivery workers' wake-up).
        self.after_commit: list[Callable[[], None]] = []

    def _woken(self) -> None:
        for wake in self.after_commit:
            wake()

    # --- reads (live money only: the API never shows test money) ---

    async def user(self, user_id: int) -> User | None:
        return await users.get(self._db.reader, user_id)

    async def user_by_external_id(self, external_id: str) -> User | None:
        return await users.by_external_id(self._db.reader, external_id)

    async def ledger_page(self, user_id: int, *, limit: int,
                          before_id: int | None) -> list[tuple[LedgerEntry, int, str | None]]:
        """Live lines newest first, each with the balance right after it and its charge's reference."""
        conn = self._db.reader
        lines = await ledger.live_page(conn, user_id, limit=limit, before_id=before_id)
        if not lines:
            return []
        balance = await ledger.live_balance_through(conn, user_id, lines[0].id)
        references = {c.id: c.reference for c in [await charges.get(conn, cid)
                                                   for cid in {ln.charge_id for ln in lines if ln.charge_id}] if c}
        page = []
        for line in lines:
            page.append((line, balance, references.get(line.charge_id) if line.charge_id else None))
            balance -= line.amount_cents
        return page

    async def charge_details(self, charge_id: str) -> tuple[Charge, list[Refund]] | None:
        charge = await charges.get(self._db.reader, charge_id)
        if charge is None:
            return None
        return charge, await charges.refunds_of(self._db.reader, charge_id)

    async def deposits_page(self, *, status: str | None, user_id: int | None, limit: int,
                            before_id: int | None) -> list[Deposit]:
        return await deposits.live_page(self._db.reader, status=status, user_id=user_id, limit=limit,
                                        before_id=before_id)

    # --- money ---

    async def charge(self, user_id: int, amount_cents: int, *, description: str, reference: str | None,
                     idempotency_key: str) -> ChargeResult:
        if amount_cents <= 0:
            raise ValueError("a charge takes a positive amount")
        asked = request_hash("charge", user_id, amount_cents, description, reference)

        async def work(tx: Conn) -> ChargeResult:
            # The user's row first: charges of one user queue here, so the key check and the balance check below
            # see every charge committed before this one, on every engine.
            customer = await users.lock(tx, user_id)
            if customer is None:
                raise WalletError(WalletProblem.USER_NOT_FOUND)
            earlier = await charges.by_key(tx, idempotency_key)
            if earlier is not None:
                return self._replay_charge(earlier, asked)
            balance = await ledger.live_balance(tx, user_id)
            assert balance is not None
            if balance < amount_cents:
                raise WalletError(WalletProblem.INSUFFICIENT_FUNDS, balance_cents=balance)
            charge = Charge(id="ch_" + secrets.token_hex(12), user_id=user_id, amount_cents=amount_cents,
                            refunded_cents=0, description=description, reference=reference, request_hash=asked,
                            balance_after_cents=balance - amount_cents, created_at=now_ts())
            if not await charges.insert_charge(tx, charge, idempotency_key):
                # Another connection recorded this key between our look-up and now (possible only across
                # processes on an engine without the row lock); its charge stands, ours is not made.
                earlier = await charges.by_key(tx, idempotency_key)
                assert earlier is not None
                return self._replay_charge(earlier, asked)
            line = await ledger.append(tx, user_id=user_id, amount_cents=-amount_cents, kind=LedgerKind.CHARGE,
                                       idempotency_key=ledger.charge_key(charge.id), charge_id=charge.id,
                                       note=description)
            await self._events.balance_changed(tx, line)
            if self._notify:
                # The message's reader (language, name) as locked above; the balance it shows is the one after.
                await notifications.queue(
                    tx, BalanceCharged(customer, amount_cents, description, charge.balance_after_cents),
                    chat_id=user_id, user_id=user_id, dedupe_key=f"charge:{charge.id}:notify")
            return ChargeResult(charge, replayed=False)

        # One transaction, in SQLite's group commit with the charges arriving meanwhile (Database.run).
        result = await self._db.run(work)
        if not result.replayed:
            self._woken()
        return result

    @staticmethod
    def _replay_charge(earlier: Charge, asked: str) -> ChargeResult:
        if earlier.request_hash != asked:
            raise WalletError(WalletProblem.IDEMPOTENCY_CONFLICT)
        return ChargeResult(earlier, replayed=True)

    async def refund(self, charge_id: str, amount_cents: int | None, *, idempotency_key: str) -> RefundResult:
        """Give back `amount_cents` of the charge, or all that is left of it when None."""
        asked = request_hash("refund", charge_id, amount_cents)
        async with self._db.transaction() as tx:
            charge = await charges.get(tx, charge_id)
            if charge is None:
                raise WalletError(WalletProblem.CHARGE_NOT_FOUND)
            await users.lock(tx, charge.user_id)
            earlier = await charges.refund_by_key(tx, idempotency_key)
            if earlier is not None:
                if earlier.request_hash != asked:
                    raise WalletError(WalletProblem.IDEMPOTENCY_CONFLICT)
                return RefundResult(earlier, replayed=True)
            charge = await charges.get(tx, charge_id)  # as it is now that we hold the lock
            assert charge is not None
            cents = charge.refundable_cents if amount_cents is None else amount_cents
            # The compare-and-set is the guard; the CHECK on charges is the constraint behind it.
            if cents <= 0 or not await charges.take_refund(tx, charge_id, cents):
                raise WalletError(WalletProblem.REFUND_EXCEEDS_CHARGE)
            balance = await ledger.live_balance(tx, charge.user_id)
            assert balance is not None
            refund = Refund(id="re_" + secrets.token_hex(12), charge_id=charge_id, amount_cents=cents,
                            request_hash=asked, balance_after_cents=balance + cents, created_at=now_ts())
            if not await charges.insert_refund(tx, refund, idempotency_key):
                raise WalletError(WalletProblem.IDEMPOTENCY_CONFLICT)  # rolls the compare-and-set back too
            line = await ledger.append(tx, user_id=charge.user_id, amount_cents=cents, kind=LedgerKind.REFUND,
                                       idempotency_key=ledger.refund_key(refund.id), charge_id=charge_id,
                                       note=charge.description)
            await self._events.balance_changed(tx, line)
            if self._notify:
                await notifications.queue(
                    tx, BalanceRefunded(await users.get(tx, charge.user_id), cents, charge.description,
                                        refund.balance_after_cents),
                    chat_id=charge.user_id, user_id=charge.user_id, dedupe_key=f"refund:{refund.id}:notify")
        self._woken()
        return RefundResult(refund, replayed=False)
