"""A local gateway for trying the bot with no money: deposits are paid by pressing a button."""
from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from decimal import Decimal

from services.gateways.base import (
    CreatedDeposit,
    DepositRequest,
    GatewayHealth,
    PaymentState,
    PaymentUpdate,
    SimulatingGateway,
)
from services.gateways.spec import BuiltGateway, GatewayContext, GatewaySpec
from services.matrix import SUPPORTED_MATRIX, all_pairs
from services.money import cents_to_decimal
from services.settings import Env, GatewaySettings

# Rough prices so the sandbox shows realistic-looking crypto amounts; nothing depends on them.
_FAKE_USD_PRICES = {
    "BTC": "60000", "ETH": "3000", "LTC": "80", "TRX": "0.12", "XMR": "150", "POL": "0.5", "BNB": "600",
    "SOL": "150", "DASH": "30", "DOGE": "0.15", "TON": "5", "BCH": "400", "AVAX": "30",
}
_EVM = {"ETH", "BSC", "POLYGON", "ARBITRUM", "AVALANCHE"}


class SandboxGateway:
    name = "sandbox"
    is_sandbox = True
    accepts_coupon_codes = False
    lifetime_seconds = 30 * 60

    def __init__(self) -> None:
        self.pairs = frozenset(all_pairs())
        self.health = GatewayHealth()

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit:
        usd = cents_to_decimal(request.amount_cents)
        price = _FAKE_USD_PRICES.get(request.coin)
        pay_amount = usd if price is None else (usd / Decimal(price)).quantize(Decimal("0.00000001"))
        return CreatedDeposit(
            order_id=f"sandbox-{request.deposit_id}",
            address=_fake_address(request.network, request.deposit_id),
            pay_amount=pay_amount,
            pay_currency=request.coin,
            expires_at=int(time.time()) + self.lifetime_seconds,
            quoted_cents=request.amount_cents,
        )

    async def fetch_payment(self, order_id: str) -> PaymentUpdate:
        # Sandbox payments happen only through simulate_payment; polling never finds one on its own.
        return PaymentUpdate(gateway=self.name, order_id=order_id, state=PaymentState.PENDING)

    def simulate_payment(self, order_id: str, paid_cents: int) -> PaymentUpdate:
        return PaymentUpdate(gateway=self.name, order_id=order_id, state=PaymentState.PAID, paid_cents=paid_cents,
                             txid=f"sandbox-tx-{order_id}", raw_status="paid", source="sandbox")

    async def close(self) -> None:
        return None


def _fake_address(network: str, seed: int) -> str:
    digest = hashlib.sha256(f"{network}:{seed}".encode()).hexdigest()
    if network in _EVM:
        return "0x" + digest[:40]
    if network == "TRON":
        return "T" + digest[:33]
    return f"sandbox-{network.lower()}-{digest[:24]}"


@dataclass(frozen=True)
class SandboxSettings(GatewaySettings):
    """The sandbox has no settings of its own."""

    @classmethod
    def from_env(cls, env: Env) -> SandboxSettings:
        return cls()


async def _build(settings: SandboxSettings, context: GatewayContext) -> BuiltGateway:
    return BuiltGateway(SandboxGateway())


SPEC = GatewaySpec(name="sandbox", title="Sandbox", settings=SandboxSettings.from_env, build=_build,
                   network_codes={network: network for nets in SUPPORTED_MATRIX.values() for network in nets},
                   capabilities=(SimulatingGateway,))
