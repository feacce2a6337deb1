"""Cryptomus' per-pair limits in the conversation: shown, enforced where they are USD, explained when refused."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from services.gateways.cryptomus import CryptomusGateway
from services.gateways.heleket import HeleketGateway
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.harness import Harness

USER = 901
MERCHANT, KEY = "merchant-uuid-1", "test-payment-key"
SERVICES = [
    {"network": "tron", "currency": "USDT", "is_available": True,
     "limit": {"min_amount": "5.00000000", "max_amount": "500.00000000"},
     "commission": {"fee_amount": "0", "percent": "2"}},
    {"network": "btc", "currency": "BTC", "is_available": True,
     "limit": {"min_amount": "0.00100000", "max_amount": "10.00000000"},
     "commission": {"fee_amount": "0", "percent": "2"}},
    {"network": "bsc", "currency": "USDT", "is_available": False,
     "limit": {"min_amount": "1.00000000", "max_amount": "500.00000000"},
     "commission": {"fee_amount": "0", "percent": "2"}},
]


@pytest.fixture
async def cryptomus():
    async with FakeCryptomus(merchant_id=MERCHANT, payment_key=KEY, services=SERVICES) as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI, tmp_path: Path, cryptomus: FakeCryptomus):
    gateway = CryptomusGateway(cryptomus.base_url, MERCHANT, KEY, callback_url=None)
    harness = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway)
    yield harness
    await harness.close()


async def test_only_available_pairs_are_offered(bot: Harness) -> None:
    await bot.send(USER, "/topup")
    assert bot.buttons(bot.last(USER))[:2] == ["USDT", "BTC"]
    await bot.tap(USER, "USDT")  # one network left for USDT: straight to the amount
    assert "USDT on TRON (TRC-20)" in bot.last_text(USER)


async def test_stablecoin_limits_are_usd_limits(bot: Harness) -> None:
    await bot.send(USER, "/topup")
    await bot.tap(USER, "USDT")
    assert "From $5.00 to $500.00." in bot.last_text(USER)
    assert "$5" in bot.buttons(bot.last(USER)) and "$100" in bot.buttons(bot.last(USER))
    await bot.send(USER, "3")
    assert "The minimum top-up is $5.00" in bot.last_text(USER)
    await bot.send(USER, "501")
    assert "The maximum top-up is $500.00" in bot.last_text(USER)
    await bot.send(USER, "5")
    assert "Please check your top-up" in bot.last_text(USER)


async def test_other_coins_show_the_coin_minimum_and_a_refusal_returns_to_the_amount(bot: Harness,
                                                                                     cryptomus: FakeCryptomus) -> None:
    await bot.send(USER, "/topup")
    await bot.tap(USER, "BTC")
    assert "minimum for this coin is 0.001 BTC" in bot.last_text(USER)
    await bot.send(USER, "10")  # $10 is 0.000166 BTC at the fake's rate: below Cryptomus' minimum
    await bot.tap(USER, "Create")
    text = bot.last_text(USER)
    assert "needs at least 0.001 BTC" in text and "How much do you want to add" in text
    assert await bot.app.db.reader.fetch_all("SELECT id FROM deposits WHERE order_id IS NOT NULL") == []
    await bot.send(USER, "100")
    await bot.tap(USER, "Create")
    assert "Waiting for payment" in bot.last_text(USER)


async def invoice_of_a_usdt_deposit(bot: Harness, cryptomus: FakeCryptomus) -> dict[str, Any]:
    """/topup, USDT, $25, Create: the invoice the bot asked the gateway (Cryptomus' protocol) for."""
    await bot.send(USER, "/topup")
    await bot.tap(USER, "USDT")
    await bot.send(USER, "25")
    await bot.tap(USER, "Create")
    [order_id] = cryptomus.invoices
    return cryptomus.invoice_request(order_id)


async def test_the_payment_page_sends_the_payer_back_to_the_bot(bot: Harness, cryptomus: FakeCryptomus) -> None:
    sent = await invoice_of_a_usdt_deposit(bot, cryptomus)
    assert sent["url_return"] == sent["url_success"] == "https://t.me/topup_test_bot"


async def test_a_heleket_page_sends_the_payer_back_to_the_bot(api: FakeBotAPI, tmp_path: Path,
                                                               cryptomus: FakeCryptomus) -> None:
    """Heleket speaks Cryptomus' protocol, so Cryptomus' fake stands in for it."""
    gateway = HeleketGateway(cryptomus.base_url, MERCHANT, KEY, callback_url=None)
    bot = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway)
    try:
        sent = await invoice_of_a_usdt_deposit(bot, cryptomus)
        assert sent["url_return"] == sent["url_success"] == "https://t.me/topup_test_bot"
    finally:
        await bot.close()
