"""Events for the operator's service, written into the outbox in the same transaction as the change they report.

An event is stored whole (id, type, created, data) when it is made, so every delivery attempt sends the same bytes
and the receiver can drop repeats by `id`. Test money (the sandbox's) raises no events: the API never shows it.
"""
from __future__ import annotations

import secrets
from datetime import datetime, timezone
from enum import Enum
from typing import Any


from services.money import cents_to_decimal
from services.store import Deposit, LedgerKind, now_ts
from services.store import deposits, ledger, outbox, users
from services.store.db import Conn


class EventType(str, Enum):
    DEPOSIT_PAID = "deposit.paid"
    DEPOSIT_EXPIRED = "deposit.expired"
    DEPOSIT_REVIEW = "deposit.review"      # held for a person to look at
    BALANCE_CHANGED = "balance.changed"
    USER_LINKED = "user.linked"


def usd(cents: int) -> str:
    """The API's spelling of an amount: a string of dollars with two decimals ("-2.00")."""
    return str(cents_to_decimal(cents))


def iso_time(ts: int | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def deposit_data(d: Deposit) -> dict[str, Any]:
    """A deposit as GET /api/v1/deposits shows it."""
    return {
        "deposit_id": d.id, "user_id": d.user_id, "status": d.status.value, "gateway": d.gateway, "coin": d.coin,
        "network": d.network, "amount": usd(d.amount_cents), "amount_cents": d.amount_cents,
        "credited": None if d.credited_cents is None else usd(d.credited_cents), "credited_cents": d.credited_cents,
        "bonus": None if d.bonus_cents is None else usd(d.bonus_cents), "bonus_cents": d.bonus_cents,
        "txid": d.txid, "created_at": iso_time(d.created_at), "paid_at": iso_time(d.paid_at),
    }


class OperatorEvents:
    """Queues events when the operator has a webhook (OPERATOR_WEBHOOK_URL); otherwise every call does nothing."""

    def __init__(self, *, enabled: bool) -> None:
        self.enabled = enabled

    async def emit(self, tx: Conn, event_type: EventType, data: dict[str, Any], *,
                   dedupe_key: str, user_id: int | None = None) -> None:
        if not self.enabled:
            return
        event = {"id": "evt_" + secrets.token_hex(12), "type": event_type.value, "created": now_ts(), "data": data}
        await outbox.enqueue(tx, kind=event_type.value, chat_id=0, user_id=user_id, payload=event,
                             dedupe_key=f"event:{dedupe_key}", channel=outbox.OPERATOR)

    async def _external_id(self, tx: Conn, user_id: int) -> str | None:
        user = await users.get(tx, user_id)
        return None if user is None else user.external_id

    async def deposit_event(self, tx: Conn, event_type: EventType, deposit_id: int,
                            key: str, **extra: Any) -> None:
        if not self.enabled:
            return
        deposit = await deposits.get(tx, deposit_id)
        if deposit is None or deposit.test:
            return
        data = {**deposit_data(deposit), "external_id": await self._external_id(tx, deposit.user_id), **extra}
        if event_type is EventType.DEPOSIT_PAID:
            balance = await ledger.live_balance(tx, deposit.user_id) or 0
            data.update(balance=usd(balance), balance_cents=balance)
        await self.emit(tx, event_type, data, dedupe_key=f"deposit:{deposit_id}:{key}", user_id=deposit.user_id)

    async def balance_changed(self, tx: Conn, line_id: int | None) -> None:
        """One event per live ledger line; call it right after the line is appended (None: nothing appended)."""
        if not self.enabled or line_id is None:
            return
        line = await ledger.get(tx, line_id)
        if line is None or line.test:
            return
        balance = await ledger.live_balance(tx, line.user_id) or 0
        data: dict[str, Any] = {
            "user_id": line.user_id, "external_id": await self._external_id(tx, line.user_id),
            "balance": usd(balance), "balance_cents": balance, "amount": usd(line.amount_cents),
            "amount_cents": line.amount_cents, "kind": line.kind.value, "ledger_id": line.id,
        }
        if line.charge_id is not None:
            data["charge_id"] = line.charge_id
        if line.deposit_id is not None and line.kind in (LedgerKind.DEPOSIT, LedgerKind.BONUS):
            data["deposit_id"] = line.deposit_id
        await self.emit(tx, EventType.BALANCE_CHANGED, data, dedupe_key=f"ledger:{line.id}", user_id=line.user_id)

    async def user_linked(self, tx: Conn, user_id: int, external_id: str, link_key: str) -> None:
        await self.emit(tx, EventType.USER_LINKED, {"user_id": user_id, "external_id": external_id},
                        dedupe_key=f"link:{link_key}", user_id=user_id)
