"""End to end with callbacks: `python -m bot` on Cryptomus and on Smart CloudPay, paid through its own listener.

Polling is slowed right down (RECONCILE_INTERVAL_SECONDS=600), so the credit can only come from the callback
that the fake gateway sends to the bot's PUBLIC_URL.
"""
from __future__ import annotations

from pathlib import Path

import aiohttp

from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.fakes.smartcloudpay import FakeSmartCloudPay
from tests.test_e2e import (
    ADMIN_CHAT,
    TOKEN,
    USER,
    BotProcess,
    bot_env,
    eventually,
    free_port,
    message_with,
    tap,
)

MERCHANT, PAYMENT_KEY = "e2e-merchant", "e2e-cryptomus-payment-key"
SCP_KEY, SCP_MERCHANT = "sk_e2e_smartcloudpay", "e2e-scp-merchant"


async def top_up_to_card(api: FakeBotAPI, network: str) -> None:
    await api.wait_for(lambda a: a.calls_of("getMe"), timeout=20)
    api.push_message(USER, "/start")
    await tap(api, USER, "Top up")
    await tap(api, USER, "USDT")
    await tap(api, USER, network)
    await api.wait_for(lambda a: message_with(a, USER, "How much"), timeout=10)
    api.push_message(USER, "25")
    await api.wait_for(lambda a: message_with(a, USER, "$25.00"), timeout=10)
    await tap(api, USER, "Create")
    await api.wait_for_call("sendPhoto", lambda c: c.params.get("chat_id") == USER, timeout=15)


def paid_count(api: FakeBotAPI) -> int:
    return len([m for m in api.sent_to(USER) if "Payment received" in (m.get("text") or "")])


async def test_cryptomus_top_up_is_credited_by_its_signed_callback(tmp_path: Path) -> None:
    port = free_port()
    bot = None
    try:
        async with FakeBotAPI() as api, FakeCryptomus(merchant_id=MERCHANT, payment_key=PAYMENT_KEY) as fake:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="cryptomus",
                          CRYPTOMUS_API_URL=fake.base_url, CRYPTOMUS_MERCHANT_ID=MERCHANT,
                          CRYPTOMUS_API_KEY=PAYMENT_KEY, WEB_HOST="127.0.0.1", WEB_PORT=str(port),
                          PUBLIC_URL=f"http://127.0.0.1:{port}", RECONCILE_INTERVAL_SECONDS="600",
                          LOG_LEVEL="DEBUG")
            bot = await BotProcess.start(env, tmp_path / "bot.log")
            await top_up_to_card(api, "TRON")
            order_id = fake.last_order_id()
            assert fake.invoice_request(order_id)["url_callback"] == f"http://127.0.0.1:{port}/webhooks/cryptomus"

            forged = await fake.send_webhook(None, order_id, body=fake.forge_webhook_body(order_id, status="paid"))
            assert forged[0] == 401 and paid_count(api) == 0

            fake.set_status(order_id, "paid")
            status, _ = await fake.send_webhook(None, order_id)
            assert status == 200
            await api.wait_for(lambda a: message_with(a, USER, "Payment received"), timeout=20)
            await api.wait_for(lambda a: message_with(a, ADMIN_CHAT, "paid"), timeout=20)
            assert (await fake.send_webhook(None, order_id))[0] == 200  # a repeat changes nothing
            async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
                health = await response.json()
            assert response.status == 200 and health["gateway"]["name"] == "cryptomus"
            assert health["pending_deposits"] == 0
            await eventually(lambda: paid_count(api) == 1, timeout=5)
            assert await bot.stop(timeout=10) == 0
        log = bot.log()
        assert PAYMENT_KEY not in log and TOKEN not in log and "Traceback" not in log
    finally:
        if bot is not None:
            await bot.kill()
            print(bot.log())


async def test_smartcloudpay_credits_only_what_its_api_confirms(tmp_path: Path) -> None:
    port = free_port()
    bot = None
    try:
        async with FakeBotAPI() as api, FakeSmartCloudPay(api_key=SCP_KEY, merchant_id=SCP_MERCHANT) as fake:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="smartcloudpay",
                          SMARTCLOUDPAY_API_URL=fake.base_url, SMARTCLOUDPAY_API_KEY=SCP_KEY,
                          SMARTCLOUDPAY_MERCHANT_ID=SCP_MERCHANT, SMARTCLOUDPAY_NOTIFY_EMAIL="ops@example.com",
                          WEB_HOST="127.0.0.1", WEB_PORT=str(port), PUBLIC_URL=f"http://127.0.0.1:{port}",
                          RECONCILE_INTERVAL_SECONDS="600")
            bot = await BotProcess.start(env, tmp_path / "bot.log")
            await top_up_to_card(api, "BNB Smart Chain")
            invoice_id = fake.last_invoice_id()
            callback_url = fake.invoice(invoice_id)["callback_url"]
            assert callback_url.startswith(f"http://127.0.0.1:{port}/webhooks/smartcloudpay?token=")

            # "paid", says the unsigned callback; the API says pending: nothing is credited.
            assert (await fake.send_webhook(callback_url, invoice_id))[0] == 200
            without_token = callback_url.split("?")[0]
            assert (await fake.send_webhook(without_token, invoice_id))[0] == 403
            assert paid_count(api) == 0

            fake.set_status(invoice_id, "paid")
            assert (await fake.send_webhook(callback_url, invoice_id))[0] == 200
            await api.wait_for(lambda a: message_with(a, USER, "Payment received"), timeout=20)
            assert await bot.stop(timeout=10) == 0
        # Every configured secret, scanned for in the real run's log (the invoice answer echoes the callback token).
        log = bot.log()
        token = callback_url.split("token=", 1)[1]
        assert "smartcloudpay create invoice answered 200" in log and "token=***" in log
        assert [s for s in (SCP_KEY, token, TOKEN) if s in log] == [] and "Traceback" not in log
    finally:
        if bot is not None:
            await bot.kill()
            print(bot.log())
