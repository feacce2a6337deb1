"""Plain records read from the store; no behaviour that touches the database."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any

from services.store.db import Row


class DepositStatus(str, Enum):
    CREATING = "creating"    # gateway call in flight; never shown to the user
    PENDING = "pending"      # address shown, waiting for payment
    PAID = "paid"
    EXPIRED = "expired"      # unpaid past its expiry; a late confirmed payment is still credited
    CANCELLED = "cancelled"  # by the user or the gateway
    FAILED = "failed"        # creation failed, or the gateway reported a failed payment


class LedgerKind(str, Enum):
    DEPOSIT = "deposit"
    BONUS = "bonus"
    ADJUSTMENT = "adjustment"
    CHARGE = "charge"        # the operator's service spent from the balance (the API)
    REFUND = "refund"        # all or part of a charge given back


class CouponKind(str, Enum):
    PERCENT = "percent"
    FIXED = "fixed"


@dataclass(frozen=True)
class User:
    id: int
    username: str | None
    first_name: str
    locale: str | None
    telegram_lang: str | None
    balance_cents: int      # every line, test money included (what the sandbox shows)
    created_at: int
    external_id: str | None = None
    test_cents: int = 0     # the part of the balance the sandbox made

    @property
    def live_balance_cents(self) -> int:
        """Real money only: what the API may spend and what a customer sees under a real gateway."""
        return self.balance_cents - self.test_cents

    def balance_shown(self, *, sandbox: bool) -> int:
        """The balance to show the customer: in the sandbox everything, under a real gateway live money only."""
        return self.balance_cents if sandbox else self.live_balance_cents

    @classmethod
    def from_row(cls, row: Row) -> User:
        return cls(
            id=row["id"],
            username=row["username"],
            first_name=row["first_name"],
            locale=row["locale"],
            telegram_lang=row["telegram_lang"],
            balance_cents=row["balance_cents"],
            created_at=row["created_at"],
            external_id=row["external_id"],
            test_cents=row["test_cents"] if "test_cents" in row.keys() else 0,
        )


@dataclass(frozen=True)
class Deposit:
    id: int
    user_id: int
    chat_id: int
    gateway: str
    order_id: str | None
    status: DepositStatus
    coin: str
    network: str
    amount_cents: int
    quoted_cents: int | None
    pay_amount: Decimal | None
    pay_currency: str | None
    address: str | None
    payment_url: str | None
    expires_at: int | None
    coupon_id: int | None
    gateway_coupon: str | None
    credited_cents: int | None
    bonus_cents: int | None
    txid: str | None
    failure_reason: str | None
    message_chat_id: int | None
    message_id: int | None
    check_failures: int
    next_check_at: int | None
    created_at: int
    paid_at: int | None
    method: str = "wallet"
    test: bool = False       # made by the sandbox: test money, never real
    seen_at: int | None = None  # the gateway saw the payment on chain; waiting for confirmations

    @property
    def is_link(self) -> bool:
        """Paid on a page the user opens, not by sending coins to an address we show."""
        return self.method != "wallet"

    def minutes_left(self, now: float) -> int:
        """The card's countdown: whole minutes, in steps of 5 above 10, so it changes at most once a minute
        (and only every 5 minutes while there is plenty of time), which keeps card edits far below Telegram's limits.
        """
        if self.expires_at is None:
            return 0
        minutes = max(0, -int((now - self.expires_at) // 60))  # rounded up: "about 30 min" for 29:59 left
        return minutes if minutes <= 10 else -(-minutes // 5) * 5

    @property
    def expected_credit_cents(self) -> int:
        """What the user will be credited if they pay as asked: the gateway's quote when it gave one."""
        return self.quoted_cents if self.quoted_cents is not None else self.amount_cents

    @classmethod
    def from_row(cls, row: Row) -> Deposit:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            chat_id=row["chat_id"],
            gateway=row["gateway"],
            order_id=row["order_id"],
            status=DepositStatus(row["status"]),
            coin=row["coin"],
            network=row["network"],
            amount_cents=row["amount_cents"],
            quoted_cents=row["quoted_cents"],
            pay_amount=Decimal(row["pay_amount"]) if row["pay_amount"] is not None else None,
            pay_currency=row["pay_currency"],
            address=row["address"],
            payment_url=row["payment_url"],
            expires_at=row["expires_at"],
            coupon_id=row["coupon_id"],
            gateway_coupon=row["gateway_coupon"],
            credited_cents=row["credited_cents"],
            bonus_cents=row["bonus_cents"],
            txid=row["txid"],
            failure_reason=row["failure_reason"],
            message_chat_id=row["message_chat_id"],
            message_id=row["message_id"],
            check_failures=row["check_failures"],
            next_check_at=row["next_check_at"],
            created_at=row["created_at"],
            paid_at=row["paid_at"],
            method=row["method"],
            test=bool(row["test"]) if "test" in row.keys() else False,
            seen_at=row["seen_at"] if "seen_at" in row.keys() else None,
        )


@dataclass(frozen=True)
class Coupon:
    id: int
    code: str
    kind: CouponKind
    value: int
    max_uses: int | None
    used_count: int
    min_amount_cents: int
    expires_at: int | None
    active: bool

    def bonus_for(self, credited_cents: int) -> int:
        if self.kind is CouponKind.PERCENT:
            return credited_cents * self.value // 100
        return self.value

    @classmethod
    def from_row(cls, row: Row) -> Coupon:
        return cls(
            id=row["id"],
            code=row["code"],
            kind=CouponKind(row["kind"]),
            value=row["value"],
            max_uses=row["max_uses"],
            used_count=row["used_count"],
            min_amount_cents=row["min_amount_cents"],
            expires_at=row["expires_at"],
            active=bool(row["active"]),
        )


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    user_id: int
    amount_cents: int
    kind: LedgerKind
    deposit_id: int | None
    note: str | None
    created_at: int
    charge_id: str | None = None
    test: bool = False

    @classmethod
    def from_row(cls, row: Row) -> LedgerEntry:
        return cls(
            id=row["id"],
            user_id=row["user_id"],
            amount_cents=row["amount_cents"],
            kind=LedgerKind(row["kind"]),
            deposit_id=row["deposit_id"],
            note=row["note"],
            created_at=row["created_at"],
            charge_id=row["charge_id"],
            test=bool(row["test"]),
        )


@dataclass(frozen=True)
class Notification:
    id: int
    kind: str
    chat_id: int
    user_id: int | None
    deposit_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    attempts: int = 0
    created_at: int = 0

    @classmethod
    def from_row(cls, row: Row) -> Notification:
        return cls(
            id=row["id"],
            kind=row["kind"],
            chat_id=row["chat_id"],
            user_id=row["user_id"],
            deposit_id=row["deposit_id"],
            payload=json.loads(row["payload"]),
            attempts=row["attempts"],
            created_at=row["created_at"],
        )
