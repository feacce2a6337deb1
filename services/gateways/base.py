"""The one protocol every payment gateway implements, and the errors it may raise."""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol

from services.matrix import Pair


class PaymentState(str, Enum):
    """A gateway's view of a payment, reduced to what settlement acts on."""

    PENDING = "pending"      # nothing final yet (also: any status we don't recognise)
    PAID = "paid"            # final and paid in full (or more)
    UNDERPAID = "underpaid"  # final, but less than asked was received
    FAILED = "failed"        # final, not paid
    CANCELLED = "cancelled"  # final, not paid (expired or cancelled at the gateway)
    REFUNDED = "refunded"    # money went back; never credited, flagged
    HELD = "held"            # funds held for review (e.g. AML); never credited, flagged


@dataclass(frozen=True)
class DepositRequest:
    deposit_id: int          # our own id, usable as the gateway's order reference
    user_id: int
    coin: str
    network: str
    amount_cents: int
    coupon_code: str | None = None  # only a code the gateway itself knows


@dataclass(frozen=True)
class CreatedDeposit:
    order_id: str
    address: str
    pay_amount: Decimal
    pay_currency: str
    expires_at: int
    payment_url: str | None = None
    quoted_cents: int | None = None  # the gateway's USD value of the deposit, if it says


@dataclass(frozen=True)
class PaymentUpdate:
    """What a gateway reports about one payment; the only input settlement takes."""

    gateway: str
    order_id: str
    state: PaymentState
    paid_cents: int | None = None  # USD actually received, when the gateway says
    txid: str | None = None
    raw_status: str | None = None
    source: str = "poll"           # poll | webhook | sandbox | admin
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


class GatewayError(Exception):
    """Base of gateway failures. `operator_detail` is for logs and the admin chat, never for users."""

    def __init__(self, operator_detail: str) -> None:
        super().__init__(operator_detail)
        self.operator_detail = operator_detail


class PairUnavailable(GatewayError):
    """The gateway refused this coin or network."""


class CouponRejected(GatewayError):
    """The gateway refused the coupon code we passed through."""


class GatewayMisconfigured(GatewayError):
    """Our credentials or account are wrong: the operator must act; retrying won't help."""


class GatewayUnavailable(GatewayError):
    """Timeout, connection error, 5xx or an answer we can't read: try again later."""


class Gateway(Protocol):
    name: str
    is_sandbox: bool
    accepts_coupon_codes: bool
    pairs: frozenset[Pair]
    lifetime_seconds: int  # how long a deposit address is valid when the gateway does not say

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit: ...

    async def fetch_payment(self, order_id: str) -> PaymentUpdate: ...

    async def close(self) -> None: ...
