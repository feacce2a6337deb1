"""No configured secret reaches a log record, at DEBUG, in-process, for every gateway and the bot (issue 8, item 7).

Each gateway talks real HTTP to its fake; every record any logger emits (ours, aiohttp's, aiogram's) is scanned for
every secret, in its message and its traceback. The subprocess tests (test_e2e*.py) scan a real run's log as well.
"""
from __future__ import annotations

import logging

import pytest

from bot.app import build_bot
from bot.config import load_settings
from services.gateways.base import DepositRequest, GatewayError
from services.gateways.cryptomus import CryptomusGateway
from services.gateways.sandbox import SandboxGateway
from services.gateways.smartcloudpay import SmartCloudPayGateway
from services.gateways.smsonline import SMSOnlineGateway
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.fakes.smartcloudpay import FakeSmartCloudPay
from tests.fakes.smsonline import FakeSMSOnline

SMS_KEY = "sms-secret-key-8d7f6e5a"
CRYPTOMUS_KEY = "cryptomus-payment-key-1a2b3c4d"
SCP_KEY = "sk_live_scp_9f8e7d6c"
SCP_TOKEN = "cb-token-q1w2e3r4t5y6u7i8"
BOT_TOKEN = "123456:AAH-secret-bot-token-zx81"
SECRETS = (SMS_KEY, CRYPTOMUS_KEY, SCP_KEY, SCP_TOKEN, BOT_TOKEN)


def request(deposit_id: int = 1, coin: str = "USDT", network: str = "TRON") -> DepositRequest:
    return DepositRequest(deposit_id=deposit_id, user_id=7, coin=coin, network=network, amount_cents=2500)


def assert_no_secret_logged(caplog: pytest.LogCaptureFixture, *, expect: str) -> None:
    text = caplog.text + "".join(r.exc_text or "" for r in caplog.records)
    assert expect in text  # the scan read real logs, so the next line means something
    assert [s for s in SECRETS if s in text] == []


async def test_smsonline_logs_no_key_at_debug(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    async with FakeSMSOnline(user_id="op-1", api_key=SMS_KEY) as fake:
        gateway = SMSOnlineGateway(fake.base_url, "op-1", SMS_KEY, timeout_seconds=2,
                                   link_methods=frozenset({"page", "card"}))
        try:
            created = await gateway.create_deposit(request())
            fake.set_status(created.order_id, "paid")
            await gateway.fetch_payment(created.order_id)
            await gateway.create_link(request(2, "USD", "PAGE"), "page")
            await gateway.account_balance()
            with pytest.raises(GatewayError):
                await SMSOnlineGateway(fake.base_url, "op-1", SMS_KEY + "x", timeout_seconds=2).account_balance()
        finally:
            await gateway.close()
    assert_no_secret_logged(caplog, expect="smsonline direct wallet answered 200")


async def test_cryptomus_logs_no_key_at_debug(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    async with FakeCryptomus(merchant_id="m-1", payment_key=CRYPTOMUS_KEY) as fake:
        gateway = CryptomusGateway(fake.base_url, "m-1", CRYPTOMUS_KEY, callback_url="https://bot.example/webhooks/c",
                                   timeout_seconds=2)
        try:
            await gateway.refresh_pairs()
            created = await gateway.create_deposit(request())
            fake.set_status(created.order_id, "paid")
            await gateway.fetch_payment(created.order_id)
            gateway.read_webhook(fake.webhook_body(created.order_id))
            await gateway.balance()
        finally:
            await gateway.close()
    assert_no_secret_logged(caplog, expect="cryptomus create invoice answered 200")


async def test_smartcloudpay_logs_neither_key_nor_callback_token_at_debug(caplog: pytest.LogCaptureFixture):
    """Its invoice answer echoes our callback URL, token included: that answer is logged, the token is not."""
    caplog.set_level(logging.DEBUG)
    async with FakeSmartCloudPay(api_key=SCP_KEY, merchant_id="scp-m") as fake:
        gateway = SmartCloudPayGateway(fake.base_url, SCP_KEY, "scp-m", notification_email="ops@example.com",
                                       callback_url=f"https://bot.example/webhooks/smartcloudpay?token={SCP_TOKEN}",
                                       timeout_seconds=2)
        try:
            created = await gateway.create_deposit(request(coin="USDT", network="BSC"))
            assert SCP_TOKEN in fake.invoice(created.order_id)["callback_url"]
            fake.set_status(created.order_id, "paid")
            await gateway.fetch_payment(created.order_id)
            await gateway.cancel_deposit((await gateway.create_deposit(request(2, "USDT", "BSC"))).order_id)
        finally:
            await gateway.close()
    assert_no_secret_logged(caplog, expect="smartcloudpay create invoice answered 200")
    assert "token=***" in caplog.text


async def test_sandbox_and_the_bot_log_no_token_when_built_and_used(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.DEBUG)
    await SandboxGateway().create_deposit(request())
    async with FakeBotAPI() as api:
        settings = load_settings({"BOT_TOKEN": BOT_TOKEN, "TELEGRAM_API_URL": api.base_url,
                                  "PAYMENT_GATEWAY": "sandbox"})
        bot = build_bot(settings)
        try:
            await bot.get_me()
            logging.getLogger("tests").debug("the bot's session: %r %s", bot.session, bot.session.api.base)
        finally:
            await bot.session.close()
    assert_no_secret_logged(caplog, expect="the bot's session")
