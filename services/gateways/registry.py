"""Every gateway the bot can run on: the spec each gateway module exports (services/gateways/spec.py).

Adding a gateway is one line in GATEWAY_MODULES (and its module and test module); the config loader, the app, the
listener's callback routes, /healthz and /gateway read GATEWAYS.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from services.gateways.spec import GatewaySpec

# One line per gateway: its module under services/gateways/, which exports SPEC.
GATEWAY_MODULES = (
    "sandbox",
    "smsonline",
    "cryptomus",
    "smartcloudpay",
    "heleket",
)


def _spec(module: str) -> GatewaySpec[Any]:
    spec = import_module(f"services.gateways.{module}").SPEC
    if not isinstance(spec, GatewaySpec) or spec.name != module:
        raise TypeError(f"services/gateways/{module}.py must export SPEC, a GatewaySpec named {module!r}")
    return spec


GATEWAYS: tuple[GatewaySpec[Any], ...] = tuple(_spec(module) for module in GATEWAY_MODULES)
_BY_NAME = {spec.name: spec for spec in GATEWAYS}


def spec_named(name: str) -> GatewaySpec[Any] | None:
    return _BY_NAME.get(name)

