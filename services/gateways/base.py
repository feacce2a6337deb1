"""The one protocol every payment gateway implements, and the errors it may raise."""
from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from services.matrix import STABLECOINS, Pair


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
    return_url: str | None = None   # where a payment page sends the payer back (the bot: https://t.me/<bot>)


@dataclass(frozen=True)
class CreatedDeposit:
    order_id: str
    address: str | None       # None only for a payment-page deposit (see CreatedLink)
    pay_amount: Decimal | None
    pay_currency: str
    expires_at: int
    payment_url: str | None = None
    quoted_cents: int | None = None  # the gateway's USD value of the deposit, if it says


@dataclass(frozen=True)
class CreatedLink:
    """A deposit paid on a page the user opens: there is no address, only the link."""

    order_id: str
    payment_url: str
    expires_at: int
    quoted_cents: int


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
    currency: str | None = None    # the coin actually paid, when the gateway says; must match the deposit's
    note: str | None = None        # for the operator: why this needs a look (shortfall, excess)
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    seen: bool = False             # pending, but the payment is on chain and waits for confirmations
    # The invoice's own figures as the gateway reports them now, cross-checked against what the bot recorded when
    # it created the deposit (settlement.judge_credit): any disagreement holds the deposit for a person.
    invoice_usd_cents: int | None = None   # the invoice's USD value (Cryptomus `amount`, SMSOnline `amountInUSD`)
    invoice_currency: str | None = None    # the invoice's own currency; ours are always "USD"
    due_amount: Decimal | None = None      # the coin amount the invoice asks for
    received_amount: Decimal | None = None  # the coin amount that actually arrived


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


@runtime_checkable
class Gateway(Protocol):
    name: str
    is_sandbox: bool
    accepts_coupon_codes: bool
    pairs: frozenset[Pair]
    lifetime_seconds: int  # how long a deposit address is valid when the gateway does not say
    health: GatewayHealth

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit: ...

    async def fetch_payment(self, order_id: str) -> PaymentUpdate: ...

    async def close(self) -> None: ...


@runtime_checkable
class WebhookGateway(Gateway, Protocol):
    """A gateway that calls us back. Reading a callback is pure: no I/O, so it can be tested and fuzzed alone."""

    def read_webhook(self, body: bytes) -> WebhookReading: ...


@runtime_checkable
class LinkGateway(Gateway, Protocol):
    """A gateway that also offers payment pages (SMSOnline's extras); `link_methods` are those enabled."""

    link_methods: frozenset[str]
    page_accepts_coupon_codes: bool  # whether the page invoice takes the coupon code the user typed

    async def create_link(self, request: DepositRequest, method: str) -> CreatedLink: ...


@runtime_checkable
class CancellableGateway(Gateway, Protocol):
    async def cancel_deposit(self, order_id: str) -> None: ...


@runtime_checkable
class RefreshingGateway(Gateway, Protocol):
    """A gateway whose offered pairs and limits change (Cryptomus): refreshed at start and periodically."""

    limits: dict[Pair, PairLimits]

    async def refresh_pairs(self) -> frozenset[Pair]: ...


@dataclass(frozen=True)
class ProviderCoupon:
    """A coupon the provider holds for the operator's account. The provider applies it, never the bot; fields are
    shown as the provider wrote them (their meanings are inferred)."""

    code: str
    percentage: str | None = None
    status: str | None = None
    target: str | None = None   # the payment method it applies to ("crypto")
    expires: str | None = None


@dataclass(frozen=True)
class GatewayPayout:
    """One payout as the gateway lists it (its own history, which may hold payouts the bot never made)."""

    reference: str
    amount: str
    coin: str
    network: str
    address: str
    status: str
    tx_hash: str | None = None


@runtime_checkable
class SimulatingGateway(Gateway, Protocol):
    """The sandbox: a payment is made by pressing a button."""

    def simulate_payment(self, order_id: str, paid_cents: int) -> PaymentUpdate: ...


@runtime_checkable
class AccountBalanceGateway(Gateway, Protocol):
    """Reports the operator's account with the provider (SMSOnline: balance, total charges, discount)."""

    async def account_balance(self) -> dict[str, Any]: ...


@runtime_checkable
class WalletBalanceGateway(Gateway, Protocol):
    """Reports the merchant's wallets: (wallet, currency, amount, USD value or None) per currency (Cryptomus)."""

    async def balance(self) -> list[tuple[str, str, Decimal, Decimal | None]]: ...


@runtime_checkable
class PrepaidGateway(Gateway, Protocol):
    """Reports prepaid API credits, on-chain balances and payout wallets (Smart CloudPay)."""

    async def prepaid_balance(self) -> Decimal: ...

    async def chain_balance(self, network: str, currency: str) -> Decimal: ...

    async def wallets(self) -> list[tuple[str, str]]: ...


@runtime_checkable
class PayoutGateway(Gateway, Protocol):
    """Pays out from the merchant's balance (Smart CloudPay)."""

    async def execute_payout(self, *, reference: str, address: str, amount: Decimal, coin: str,
                             network: str) -> dict[str, Any]: ...

    async def payout_status(self, reference: str) -> dict[str, Any] | None: ...


@runtime_checkable
class AccountCouponsGateway(Gateway, Protocol):
    """Lists the coupons the provider holds for the operator's account (SMSOnline's Get Coupons)."""

    async def account_coupons(self) -> list[ProviderCoupon]: ...


@runtime_checkable
class OutgoingIPGateway(Gateway, Protocol):
    """Tells which address our calls come from, for the provider's allow-list (Smart CloudPay's check-ip)."""

    async def outgoing_ip(self) -> str: ...


@runtime_checkable
class PayoutHistoryGateway(Gateway, Protocol):
    """Lists the gateway's own recent payouts (Smart CloudPay's payout history)."""

    async def payout_history(self, limit: int) -> list[GatewayPayout]: ...


class AmountRejected(GatewayError):
    """The gateway's own minimum or maximum for this pair; `limit` is its wording (e.g. "0.5 USDT")."""

    def __init__(self, operator_detail: str, *, minimum: str | None = None, maximum: str | None = None) -> None:
        super().__init__(operator_detail)
        self.minimum = minimum
        self.maximum = maximum


@dataclass(frozen=True)
class PairLimits:
    """A gateway's per-pair limits, in coin units (Cryptomus reports them so)."""

    min_amount: Decimal | None
    max_amount: Decimal | None

    def in_usd_cents(self, coin: str) -> tuple[int | None, int | None]:
        """For a stablecoin the limits are USD limits (1:1); other coins need a rate we don't have: (None, None)."""
        if coin not in STABLECOINS:
            return None, None
        low = None if self.min_amount is None else int((self.min_amount * 100).to_integral_value(ROUND_CEILING))
        high = None if self.max_amount is None else int((self.max_amount * 100).to_integral_value(ROUND_FLOOR))
        return low, high


class WebhookVerdict(str, Enum):
    SETTLE = "settle"            # verified: settle `update` as it is
    REFETCH = "refetch"          # unauthenticated hint: ask the gateway about `order_id`, settle what it says
    BAD_REQUEST = "bad_request"  # not JSON, or required fields missing
    BAD_SIGNATURE = "bad_signature"
    IGNORED = "ignored"          # valid, but nothing for us (e.g. a payout or static-wallet event)


@dataclass(frozen=True)
class WebhookReading:
    verdict: WebhookVerdict
    update: PaymentUpdate | None = None
    order_id: str | None = None
    detail: str = ""


@dataclass
class GatewayHealth:
    """When the gateway last answered usefully, and its latest failure: for /healthz and the admin chat."""

    last_ok_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None       # the operator's detail: admin chat and logs only
    last_error_kind: str | None = None  # a short status for /healthz, which needs no authentication

    def ok(self) -> None:
        self.last_ok_at = time.time()

    def failed(self, detail: str, kind: str = "unavailable") -> None:
        self.last_error_at = time.time()
        self.last_error = detail[:300]
        self.last_error_kind = kind

    @contextmanager
    def track(self) -> Iterator[None]:
        """Around one whole gateway call: OK only if its answer was usable; the gateway saying no counts as OK."""
        try:
            yield
        except (PairUnavailable, CouponRejected, AmountRejected):
            self.ok()
            raise
        except GatewayError as exc:
            kind = "misconfigured" if isinstance(exc, GatewayMisconfigured) else "unavailable"
            self.failed(exc.operator_detail, kind)
            raise
        else:
            self.ok()
