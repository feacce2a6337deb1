"""What a gateway can do beyond the base protocol, each capability as its protocol type (services/gateways/base.py).

Built once at start-up from the gateway's spec, which checks that the gateway implements what it declares; the
services and handlers then use these typed references instead of asking the gateway object what it has.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from services.gateways.base import (
    AccountBalanceGateway,
    AccountCouponsGateway,
    CancellableGateway,
    Gateway,
    LinkGateway,
    OutgoingIPGateway,
    PayoutGateway,
    PayoutHistoryGateway,
    PrepaidGateway,
    RefreshingGateway,
    SimulatingGateway,
    WalletBalanceGateway,
    WebhookGateway,
)


@dataclass(frozen=True)
class Capabilities:
    """What the running gateway can do beyond the base protocol, each as its protocol type; None: it can't."""

    webhook: WebhookGateway | None = None
    cancel: CancellableGateway | None = None
    refresh: RefreshingGateway | None = None
    links: LinkGateway | None = None
    account_balance: AccountBalanceGateway | None = None
    wallet_balance: WalletBalanceGateway | None = None
    prepaid: PrepaidGateway | None = None
    payouts: PayoutGateway | None = None
    payout_history: PayoutHistoryGateway | None = None
    account_coupons: AccountCouponsGateway | None = None
    outgoing_ip: OutgoingIPGateway | None = None
    simulate: SimulatingGateway | None = None

    @classmethod
    def of(cls, gateway: Gateway, declared: tuple[type, ...] | None = None) -> Capabilities:
        """The declared capabilities, each checked against its protocol: a spec that promises more than its gateway
        has stops the start. With declared=None, every protocol the gateway implements (a gateway built by hand)."""
        found: dict[str, Any] = {}
        for capability in fields(cls):
            protocol = _PROTOCOLS[capability.name]
            if declared is not None and protocol not in declared:
                continue
            if isinstance(gateway, protocol):
                found[capability.name] = gateway
            elif declared is not None:
                raise TypeError(f"gateway {gateway.name} declares {protocol.__name__} but does not implement it")
        unknown = [p.__name__ for p in declared or () if p not in _PROTOCOLS.values()]
        if unknown:
            raise TypeError(f"gateway {gateway.name} declares unknown capabilities: {', '.join(unknown)}")
        return cls(**found)

    def names(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not None]


_PROTOCOLS: dict[str, type] = {
    "webhook": WebhookGateway, "cancel": CancellableGateway, "refresh": RefreshingGateway, "links": LinkGateway,
    "account_balance": AccountBalanceGateway, "wallet_balance": WalletBalanceGateway, "prepaid": PrepaidGateway,
    "payouts": PayoutGateway, "payout_history": PayoutHistoryGateway, "account_coupons": AccountCouponsGateway,
    "outgoing_ip": OutgoingIPGateway, "simulate": SimulatingGateway,
}
