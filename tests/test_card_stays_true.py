"""The deposit card stays true while it waits (issue 12, item 6): a countdown that moves, "payment seen" when the
gateway reports it, and a paid card that keeps what was paid, where, and the transaction.

The real dispatcher, the fake Bot API, and Cryptomus' fake over real HTTP.
"""
from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.gateways.cryptomus import CryptomusGateway
from services.store import deposits, now_ts
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.harness import Harness

USER = 777
MERCHANT, KEY = "merchant-uuid-card", "card-payment-key"
TXID = "6f0d9c8374db57cac0d806251473de754f361c83a03cd805f74aa9da3193486b"


@pytest.fixture
async def cryptomus() -> AsyncIterator[FakeCryptomus]:
    async with FakeCryptomus(merchant_id=MERCHANT, payment_key=KEY) as fake:
        yield fake


@pytest.fixture
async def bot(api: FakeBotAPI, tmp_path: Path, cryptomus: FakeCryptomus) -> AsyncIterator[Harness]:
    gateway = CryptomusGateway(cryptomus.base_url, MERCHANT, KEY, callback_url=None)
    h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway)
    yield h
    await h.close()


async def usdt_card(h: Harness) -> dict:
    await h.send(USER, "/topup")
    await h.tap(USER, "USDT")
    await h.tap(USER, "TRON")
    await h.send(USER, "25")
    await h.tap(USER, "Create")
    card = h.last(USER)
    assert "photo" in card, h.last_text(USER)
    return card


def caption(h: Harness, card: dict) -> str:
    return h.api.messages[(USER, card["message_id"])]["caption"]


async def test_payment_seen_then_paid_card_keeps_amount_network_and_transaction(bot: Harness,
                                                                               cryptomus: FakeCryptomus) -> None:
    card = await usdt_card(bot)
    [order_id] = cryptomus.invoices
    assert "Waiting for payment" in caption(bot, card)

    cryptomus.set_status(order_id, "confirm_check")
    await bot.tap(USER, "Check status")

    seen = caption(bot, card)
    assert "Payment seen, waiting for confirmations" in seen and "the network is confirming it" in seen

    cryptomus.set_status(order_id, "paid", txid=TXID)
    await bot.tap(USER, "Check status")

    paid = bot.api.messages[(USER, card["message_id"])]
    deposit = await deposits.get(bot.app.db.reader, 1)
    assert deposit is not None and deposit.pay_amount is not None
    assert "Paid" in paid["caption"] and "Credited: $25.00" in paid["caption"]
    assert f"Payment: {deposit.pay_amount} USDT · TRON (TRC-20)" in paid["caption"]
    assert "Transaction: 6f0d9c83…3193486b" in paid["caption"]
    sent = bot.api.calls_of("editMessageCaption")[-1].params["caption"]  # the HTML as sent: the link is there
    assert f'<a href="https://tronscan.org/#/transaction/{TXID}">' in sent


async def test_the_countdown_moves_at_most_once_a_minute(bot: Harness) -> None:
    card = await usdt_card(bot)
    deposit = await deposits.get(bot.app.db.reader, 1)
    assert deposit is not None and deposit.expires_at is not None
    start = caption(bot, card)
    assert "(about 60 min)" in start  # Cryptomus' invoices live an hour; steps of 5 minutes above 10

    # Time passes: the deposit now has eight minutes left (moved in the store, so every clock agrees).
    await expires_in(bot, 8 * 60 - 5)
    await bot.app.reconciler.run_once()
    await bot.deliver()
    assert "(about 8 min)" in caption(bot, card)

    edits = len(bot.api.calls_of("editMessageCaption"))
    await bot.app.reconciler.run_once()  # the same minute: nothing to edit
    await bot.deliver()
    assert len(bot.api.calls_of("editMessageCaption")) == edits

    await expires_in(bot, 7 * 60 - 5)
    await bot.app.reconciler.run_once()
    await bot.deliver()
    assert "(about 7 min)" in caption(bot, card)


async def expires_in(h: Harness, seconds: int) -> None:
    async with h.app.db.transaction() as tx:
        await tx.execute("UPDATE deposits SET expires_at = ? WHERE id = 1", (now_ts() + seconds,))
