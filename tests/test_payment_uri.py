"""Payment URIs (BIP 21 and ton://transfer) and the QR code on the card, decoded back (issue 12, item 3).

The decoder is zxing-cpp, a maintained C++ barcode reader with wheels on PyPI (no system library needed), fed
the very PNG the bot uploaded to the fake Bot API.
"""
from __future__ import annotations

import io
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import zxingcpp
from PIL import Image

from services.payment_uri import payment_uri
from services.store import deposits
from tests.harness import Harness

USER = 555


def decode_qr(png: bytes) -> str:
    [found] = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))
    return found.text


@pytest.mark.parametrize(("coin", "address", "amount", "expected"), [
    ("BTC", "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq", "0.00041667",
     "bitcoin:bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq?amount=0.00041667"),
    ("LTC", "LTdsVS8VDw6syvfQADdhf2PHAm3rMGJvPX", "0.3125",
     "litecoin:LTdsVS8VDw6syvfQADdhf2PHAm3rMGJvPX?amount=0.3125"),
    ("DOGE", "DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L", "150", "dogecoin:DH5yaieqoZN36fDVciNyRueRGvGLR3mr7L?amount=150"),
    ("DASH", "XuUGDZHrKLo841CyamDbG5W7n59epA71h2", "1.2", "dash:XuUGDZHrKLo841CyamDbG5W7n59epA71h2?amount=1.2"),
    # CashAddr carries its prefix already; a legacy address gets it.
    ("BCH", "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a", "0.05",
     "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a?amount=0.05"),
    ("BCH", "12A1MyfXbW6RhdRAZEqofac5jCQQjwEPBu", "1.2", "bitcoincash:12A1MyfXbW6RhdRAZEqofac5jCQQjwEPBu?amount=1.2"),
])
def test_bip21_coins_carry_address_and_amount(coin: str, address: str, amount: str, expected: str) -> None:
    assert payment_uri(coin, coin, address, Decimal(amount)) == expected


def test_ton_amount_is_in_nanotons() -> None:
    address = "EQD2NmD_lH5f5u1Kj3KfGyTvhZSX0Eg6qp2a5IQUKXxOG21n"
    assert payment_uri("TON", "TON", address, Decimal("1.5")) == f"ton://transfer/{address}?amount=1500000000"
    assert payment_uri("TON", "TON", address, Decimal("0.0000000001")) is None  # finer than a nanoton


@pytest.mark.parametrize(("coin", "network"), [("USDT", "TRON"), ("ETH", "ETH"), ("USDT", "TON"), ("XMR", "XMR"),
                                               ("SOL", "SOL")])
def test_elsewhere_there_is_no_uri(coin: str, network: str) -> None:
    assert payment_uri(coin, network, "TXYZabcdefghijklmnopqrstuvwxyz12345", Decimal("10")) is None


def test_odd_addresses_are_never_put_into_a_uri() -> None:
    assert payment_uri("BTC", "BTC", "bc1q?amount=999", Decimal("1")) is None
    assert payment_uri("BTC", "BTC", "bc1q address with spaces", Decimal("1")) is None


async def test_scanned_btc_card_gives_back_the_address_and_the_amount(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "BTC")
    await harness.send(USER, "25")
    await harness.tap(USER, "Create")
    deposit = await deposits.get(harness.app.db.reader, 1)
    assert deposit is not None and deposit.address and deposit.pay_amount

    [photo] = harness.api.calls_of("sendPhoto")
    uri = urlsplit(decode_qr(photo.file("photo") or b""))

    assert (uri.scheme, uri.path) == ("bitcoin", deposit.address)
    assert Decimal(parse_qs(uri.query)["amount"][0]) == deposit.pay_amount
    card = harness.last(USER)
    assert "The QR code holds the address and the amount" in card["caption"]
    copy = {b["text"]: b["copy_text"]["text"] for row in card["reply_markup"]["inline_keyboard"] for b in row
            if "copy_text" in b}
    assert copy == {"📋 Copy address": deposit.address, "📋 Copy amount": str(deposit.pay_amount)}


async def test_scanned_usdt_card_gives_the_bare_address_and_says_so(harness: Harness) -> None:
    await harness.send(USER, "/topup")
    await harness.tap(USER, "USDT")
    await harness.tap(USER, "TRON")
    await harness.send(USER, "25")
    await harness.tap(USER, "Create")
    deposit = await deposits.get(harness.app.db.reader, 1)
    assert deposit is not None

    [photo] = harness.api.calls_of("sendPhoto")

    assert decode_qr(photo.file("photo") or b"") == deposit.address
    assert "The QR code holds the address only" in harness.last(USER)["caption"]
