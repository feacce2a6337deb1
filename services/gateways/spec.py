"""A gateway declares itself: each gateway module exports one GatewaySpec, and services/gateways/registry.py lists
them. The config loader, the app, the listener's routes, /healthz and /gateway read the specs; nothing probes a
gateway object for what it can do."""
from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from services.gateways.base import Gateway, WebhookGateway
from services.gateways.capabilities import Capabilities
from services.settings import Env, GatewaySettings
from services.store import Database
from services.webhooks import CallbackPolicy

S = TypeVar("S", bound=GatewaySettings)


@dataclass(frozen=True)
class GatewayContext:
    """What a factory may use besides its own settings."""

    db: Database
    public_url: str | None  # where the gateway can call us back; None: it can't (polling only)


@dataclass(frozen=True)
class BuiltGateway:
    gateway: Gateway
    callback_policy: CallbackPolicy | None = None  # checks its callbacks must pass beyond the signature


@dataclass(frozen=True)
class GatewaySpec(Generic[S]):
    """Everything the rest of the bot knows about one gateway.

    `settings` reads the gateway's own environment variables into its typed settings (ConfigError on a mistake);
    `build` makes the gateway from them; `network_codes` maps our network names to the gateway's;
    `capabilities` lists the protocols (services/gateways/base.py) it implements beyond Gateway.
    """

    name: str               # PAYMENT_GATEWAY=<name>; also the callback path /webhooks/<name>
    title: str              # as operators know it, for messages
    settings: Callable[[Env], S]
    build: Callable[[S, GatewayContext], Awaitable[BuiltGateway]]
    network_codes: Mapping[str, str]
    capabilities: tuple[type, ...] = ()

    @property
    def takes_callbacks(self) -> bool:
        return WebhookGateway in self.capabilities

    def capabilities_of(self, gateway: Gateway) -> Capabilities:
        return Capabilities.of(gateway, self.capabilities)

    async def build_from(self, settings: GatewaySettings, context: GatewayContext) -> BuiltGateway:
        """Build from the settings this spec's `settings` read (Settings.gateway)."""
        return await self.build(cast(S, settings), context)
