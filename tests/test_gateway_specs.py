"""A gateway declares itself: one spec per module, listed once, checked at start-up; nothing else names gateways."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from bot.app import build_gateway
from bot.config import load_settings
from services.gateways.base import WebhookGateway
from services.gateways.capabilities import Capabilities
from services.gateways.registry import GATEWAYS
from services.gateways.sandbox import SandboxGateway
from services.store import Database

ROOT = Path(__file__).resolve().parent.parent


def test_every_spec_is_complete_and_truthful() -> None:
    assert len({spec.name for spec in GATEWAYS}) == len(GATEWAYS)
    for spec in GATEWAYS:
        assert (ROOT / "services" / "gateways" / f"{spec.name}.py").exists()
        assert spec.title and spec.network_codes and callable(spec.settings) and callable(spec.build)
        assert all(isinstance(capability, type) for capability in spec.capabilities)


def test_a_spec_that_promises_what_its_gateway_lacks_stops_the_start() -> None:
    with pytest.raises(TypeError, match="WebhookGateway"):
        Capabilities.of(SandboxGateway(), (WebhookGateway,))
    assert Capabilities.of(SandboxGateway()).simulate is not None


async def test_the_app_builds_the_chosen_gateway_from_its_spec(tmp_path: Path) -> None:
    settings = load_settings({"BOT_TOKEN": "123456:ABC-def", "PAYMENT_GATEWAY": "cryptomus",
                              "CRYPTOMUS_MERCHANT_ID": "m", "CRYPTOMUS_API_KEY": "k", "PUBLIC_URL": "https://b.example",
                              "CRYPTOMUS_WEBHOOK_IPS": "203.0.113.0/24"})
    db = Database(tmp_path / "bot.sqlite3")
    await db.connect()
    try:
        gateway, capabilities, policies = await build_gateway(settings, db)
        assert gateway.name == "cryptomus" and capabilities.webhook is gateway and capabilities.simulate is None
        assert capabilities.names() == ["webhook", "refresh", "wallet_balance"]
        assert [str(n) for n in policies["cryptomus"].allowed_sources or ()] == ["203.0.113.0/24"]
        await gateway.close()
    finally:
        await db.close()


def test_no_module_outside_the_gateways_names_a_gateway_class() -> None:
    """The app, the listener, /gateway and the services reach a gateway through its spec and capabilities only."""
    named = []
    for layer in ("bot", "handlers", "services"):
        for path in (ROOT / layer).rglob("*.py"):
            if path.parent.name == "gateways" or path.name == "payouts.py":
                continue  # payouts.py reads Smart CloudPay's network codes, the only payout gateway
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("services.gateways."):
                    module = node.module.rsplit(".", 1)[1]
                    if module not in ("base", "capabilities", "registry", "spec", "http"):
                        named.append(f"{path.relative_to(ROOT)} imports services.gateways.{module}")
    assert not named, "\n".join(named)
