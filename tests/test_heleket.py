"""Heleket: Cryptomus' protocol on https://api.heleket.com, added as one gateway module.

The fake is the Cryptomus fake (tests/fakes/cryptomus.py): Heleket documents the same request signing, invoice and
webhook contract, so the same fake server plays Heleket here, over real HTTP.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import aiohttp
import pytest

from bot.config import ConfigError, load_settings
from bot.usage import usage
from services.gateways.base import DepositRequest, PaymentState, WebhookVerdict
from services.gateways.heleket import HeleketGateway, HeleketSettings
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.test_e2e import ADMIN_CHAT, TOKEN, USER, BotProcess, bot_env, eventually, free_port, message_with
from tests.test_e2e_callbacks import paid_count, top_up_to_card

MERCHANT, PAYMENT_KEY = "heleket-merchant-uuid", "heleket-payment-key"
BASE = {"BOT_TOKEN": "123456:ABC-def_ghi", "PAYMENT_GATEWAY": "heleket"}


def test_settings_are_its_own_with_clear_messages() -> None:
    s = load_settings({**BASE, "HELEKET_MERCHANT_ID": "m-1", "HELEKET_API_KEY": "k-secret",
                       "HELEKET_WEBHOOK_IPS": "203.0.113.7"})
    assert isinstance(s.gateway, HeleketSettings) and s.payment_gateway == "heleket"
    assert s.gateway.api_url == "https://api.heleket.com" and s.gateway.merchant_id == "m-1"
    assert [str(n) for n in s.gateway.webhook_ips or ()] == ["203.0.113.7/32"] and "k-secret" not in repr(s)
    for env, name in (({}, "HELEKET_MERCHANT_ID"), ({"HELEKET_MERCHANT_ID": "m"}, "HELEKET_API_KEY"),
                      ({"HELEKET_MERCHANT_ID": "m", "HELEKET_API_KEY": "k", "HELEKET_WEBHOOK_IPS": "x"},
                       "HELEKET_WEBHOOK_IPS"),
                      ({"HELEKET_MERCHANT_ID": "m", "HELEKET_API_KEY": "k", "HELEKET_API_URL": "heleket"},
                       "HELEKET_API_URL")):
        with pytest.raises(ConfigError, match=name) as info:
            load_settings({**BASE, **env})
        assert "PAYMENT_GATEWAY=heleket" in str(info.value) or "URL" in str(info.value) or "networks" in str(info.value)


def test_help_lists_the_settings_it_reads() -> None:
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key, default=None):  # type: ignore[override]
            read.add(key)
            return super().get(key, default)

    load_settings(Recording({**BASE, "HELEKET_MERCHANT_ID": "m", "HELEKET_API_KEY": "k"}))
    heleket = sorted(name for name in read if name.startswith("HELEKET_"))
    assert len(heleket) == 4 and all(f"  {name}" in usage() for name in heleket)


async def test_invoice_is_signed_and_webhooks_are_verified() -> None:
    async with FakeCryptomus(merchant_id=MERCHANT, payment_key=PAYMENT_KEY) as fake:
        gateway = HeleketGateway(fake.base_url, MERCHANT, PAYMENT_KEY, callback_url="https://bot/webhooks/heleket")
        try:
            created = await gateway.create_deposit(DepositRequest(deposit_id=9, user_id=1, coin="USDT",
                                                                  network="TRON", amount_cents=2500))
        finally:
            await gateway.close()
        [request] = fake.requests_to("/v1/payment")
        assert request.headers["merchant"] == MERCHANT
        assert request.headers["sign"] == hashlib.md5(base64.b64encode(request.body) + PAYMENT_KEY.encode()).hexdigest()
        assert fake.invoice_request(created.order_id)["url_callback"] == "https://bot/webhooks/heleket"

        forged = gateway.read_webhook(fake.forge_webhook_body(created.order_id, status="paid"))
        assert forged.verdict is WebhookVerdict.BAD_SIGNATURE and forged.update is None
        fake.set_status(created.order_id, "paid")
        genuine = gateway.read_webhook(fake.webhook_body(created.order_id))
        assert genuine.verdict is WebhookVerdict.SETTLE and genuine.update is not None
        assert genuine.update.gateway == "heleket" and genuine.update.state is PaymentState.PAID


async def test_heleket_top_up_is_credited_once_by_its_signed_callback(tmp_path: Path) -> None:
    port = free_port()
    bot = None
    try:
        async with FakeBotAPI() as api, FakeCryptomus(merchant_id=MERCHANT, payment_key=PAYMENT_KEY) as fake:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="heleket",
                          HELEKET_API_URL=fake.base_url, HELEKET_MERCHANT_ID=MERCHANT, HELEKET_API_KEY=PAYMENT_KEY,
                          WEB_HOST="127.0.0.1", WEB_PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}",
                          RECONCILE_INTERVAL_SECONDS="600", LOG_LEVEL="DEBUG")
            bot = await BotProcess.start(env, tmp_path / "bot.log")
            await top_up_to_card(api, "TRON")
            order_id = fake.last_order_id()
            assert order_id is not None
            assert fake.invoice_request(order_id)["url_callback"] == f"http://127.0.0.1:{port}/webhooks/heleket"
            [invoice] = fake.requests_to("/v1/payment")
            assert invoice.headers["sign"] == hashlib.md5(base64.b64encode(invoice.body)
                                                          + PAYMENT_KEY.encode()).hexdigest()

            forged = await fake.send_webhook(None, order_id, body=fake.forge_webhook_body(order_id, status="paid"))
            assert forged[0] == 401 and paid_count(api) == 0
            other = await fake.send_webhook(f"http://127.0.0.1:{port}/webhooks/cryptomus", order_id)
            assert other[0] == 404 and paid_count(api) == 0  # only the running gateway's path listens

            fake.set_status(order_id, "paid")
            assert (await fake.send_webhook(None, order_id))[0] == 200
            await api.wait_for(lambda a: message_with(a, USER, "Payment received"), timeout=20)
            await api.wait_for(lambda a: message_with(a, ADMIN_CHAT, "heleket"), timeout=20)
            assert (await fake.send_webhook(None, order_id))[0] == 200  # a repeat changes nothing
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
                health = await response.json()
            assert response.status == 200 and health["gateway"]["name"] == "heleket"
            await eventually(lambda: paid_count(api) == 1, timeout=5)
            assert await bot.stop(timeout=10) == 0
        log = bot.log()
        assert PAYMENT_KEY not in log and TOKEN not in log and "Traceback" not in log
    finally:
        if bot is not None:
            await bot.kill()
            print(bot.log())
