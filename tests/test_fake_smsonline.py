"""Tests for the SMSOnline fake (tests/fakes/smsonline.py), over real HTTP with aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import re
import time
from decimal import Decimal

import aiohttp
import pytest

from tests.fakes.smsonline import FakeSMSOnline

USER = "operator-1"
KEY = "test-api-key"


@pytest.fixture
async def fake():
    async with FakeSMSOnline(
        coupons={
            "SAVE10": {"percentage": 10, "status": "issued", "expired": False},
            "OLD": {"percentage": 5, "status": "issued", "expired": True},
            "USED": {"percentage": 5, "status": "used", "expired": False},
        }
    ) as f:
        yield f


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def direct(session, fake, currency="USDT", network="BSC", amount="5.15", body=None, user=USER):
    url = f"{fake.base_url}/v3/customers/{user}/cryptomus/direct/{currency}/{network}/{amount}"
    async with session.put(url, json=body if body is not None else {"apiKey": KEY}) as resp:
        return resp.status, await resp.json(content_type=None)


async def transaction(session, fake, order_id, key=KEY):
    url = f"{fake.base_url}/v3/customers/{USER}/cryptomus/transaction/{order_id}"
    async with session.get(url, params={"apiKey": key}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_base_url_has_no_v3_suffix(fake):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.base_url)


async def test_direct_wallet_success_shape(fake, session):
    status, data = await direct(session, fake)
    assert status == 200
    assert data["ok"] is True
    body = data["body"]
    assert set(body) == {"to_address", "currency", "network", "amountInUSD", "amountInCrypto", "expire_at", "url",
                         "order_id"}
    assert body["currency"] == "USDT"
    assert body["network"] == "bsc"
    assert body["amountInUSD"] == "5.15"
    assert body["amountInCrypto"] == "5.15"
    assert re.fullmatch(r"0x[0-9a-f]{40}", body["to_address"])
    assert isinstance(body["expire_at"], int) and abs(body["expire_at"] - (time.time() + 3600)) < 60
    assert re.fullmatch(r"https://pay\.cryptomus\.com/pay/[0-9a-f-]{36}", body["url"])
    assert fake.last_order_id() == body["order_id"]
    stored = fake.deposits[body["order_id"]]
    assert stored["status"] == "check" and stored["amount"] == "5.15" and stored["couponCode"] is None
    assert KEY not in str(data)


async def test_direct_wallet_non_stable_and_round_amount(fake, session):
    status, data = await direct(session, fake, currency="BTC", network="BTC", amount="6")
    assert status == 200
    assert data["body"]["amountInUSD"] == "6.00"
    assert data["body"]["amountInCrypto"] == "0.00010000"
    assert Decimal(data["body"]["amountInCrypto"]) == Decimal("6") / Decimal("60000")
    status, data = await direct(session, fake, currency="USDT", network="TRON", amount="10")
    assert data["body"]["to_address"].startswith("T") and len(data["body"]["to_address"]) == 34


@pytest.mark.parametrize("body", [{"apiKey": "wrong"}, {}, {"couponCode": "SAVE10"}])
async def test_direct_wallet_bad_key_is_401(fake, session, body):
    status, data = await direct(session, fake, body=body)
    assert status == 401
    assert data == {"ok": False, "errorMessage": "User-verification Failed"}


async def test_direct_wallet_wrong_user_and_non_json_body_are_401(fake, session):
    status, _ = await direct(session, fake, user="someone-else")
    assert status == 401
    url = f"{fake.base_url}/v3/customers/{USER}/cryptomus/direct/USDT/BSC/5"
    async with session.put(url, data="apiKey=test-api-key") as resp:
        assert resp.status == 401
        assert KEY not in await resp.text()


async def test_auth_is_checked_before_currency(fake, session):
    status, _ = await direct(session, fake, currency="ABC", body={"apiKey": "wrong"})
    assert status == 401


@pytest.mark.parametrize(
    "currency,network,message",
    [
        ("ABC", "BSC", "Non-acceptable Currency"),
        ("usdt", "BSC", "Non-acceptable Currency"),
        ("USDT", "BTC", "Non-acceptable Network"),
        ("USDT", "bsc", "Non-acceptable Network"),
        ("USDC", "TRON", "Non-acceptable Network"),
    ],
)
async def test_direct_wallet_matrix_400(fake, session, currency, network, message):
    status, data = await direct(session, fake, currency=currency, network=network)
    assert status == 400
    assert data == {"ok": False, "errorMessage": message}
    assert fake.deposits == {}


@pytest.mark.parametrize("amount", ["5.155", "abc", "-5", "5.", ".5", "1e3"])
async def test_direct_wallet_bad_amount_400(fake, session, amount):
    status, data = await direct(session, fake, amount=amount)
    assert status == 400
    assert data["ok"] is False


@pytest.mark.parametrize("code", ["NOPE", "OLD", "USED"])
async def test_invalid_coupon_is_500(fake, session, code):
    status, data = await direct(session, fake, body={"apiKey": KEY, "couponCode": code})
    assert status == 500
    assert data == {"ok": False, "errorMessage": "Invalid, or expired Coupon"}


async def test_valid_coupon_succeeds(fake, session):
    status, data = await direct(session, fake, body={"apiKey": KEY, "couponCode": "SAVE10"})
    assert status == 200 and data["ok"] is True
    assert fake.deposits[data["body"]["order_id"]]["couponCode"] == "SAVE10"
    assert fake.requests_to("/cryptomus/direct/")[-1].json == {"apiKey": KEY, "couponCode": "SAVE10"}


async def test_transaction_status_flow(fake, session):
    _, data = await direct(session, fake)
    order_id = data["body"]["order_id"]

    status, tx = await transaction(session, fake, order_id)
    assert status == 200 and tx["ok"] is True
    for k, v in data["body"].items():
        assert tx["body"][k] == v
    assert tx["body"]["status"] == "check"
    assert tx["body"]["is_final"] is False
    assert "payment_amount_usd" not in tx["body"]

    before = fake.balance
    fake.set_status(order_id, "paid")
    _, tx = await transaction(session, fake, order_id)
    assert tx["body"]["status"] == "paid"
    assert tx["body"]["is_final"] is True
    assert tx["body"]["payment_amount_usd"] == "5.15"
    assert fake.balance == before + 515
    fake.set_status(order_id, "paid_over")  # credited once only
    assert fake.balance == before + 515


async def test_transaction_status_field_variants(fake, session):
    _, data = await direct(session, fake)
    order_id = data["body"]["order_id"]
    fake.set_status(order_id, "cancel")

    fake.status_field = "payment_status"
    _, tx = await transaction(session, fake, order_id)
    assert tx["body"]["payment_status"] == "cancel" and "status" not in tx["body"]

    fake.status_field = None
    fake.include_is_final = False
    _, tx = await transaction(session, fake, order_id)
    assert "status" not in tx["body"] and "payment_status" not in tx["body"] and "is_final" not in tx["body"]


async def test_transaction_auth_and_unknown(fake, session):
    _, data = await direct(session, fake)
    status, _ = await transaction(session, fake, data["body"]["order_id"], key="wrong")
    assert status == 401
    status, tx = await transaction(session, fake, "00000000-0000-0000-0000-000000000000")
    assert status == 404
    assert tx == {"ok": False, "errorMessage": "Transaction not found"}
    assert fake.requests[-1].query["apiKey"] == KEY


async def test_balance_and_coupons(fake, session):
    async with session.get(f"{fake.base_url}/v3/customers/{USER}/balance", params={"apiKey": KEY}) as resp:
        assert resp.status == 200
        body = (await resp.json())["body"]
    assert body["userId"] == USER and body["balance"] == 500 and body["totalCharges"] == "500"
    assert body["couponCount"] == 1
    assert body["discountRates"][0] == [8000, 0.8, "-20%"]

    async with session.get(f"{fake.base_url}/v3/customers/{USER}/coupons", params={"apiKey": KEY}) as resp:
        data = await resp.json()
    assert data["ok"] is True
    codes = {c["code"]: c for c in data["body"]["codes"]}
    assert set(codes) == {"SAVE10", "OLD", "USED"}
    assert codes["SAVE10"]["percentage"] == 10 and codes["SAVE10"]["status"] == "issued"
    assert codes["SAVE10"]["targetPay"] == "crypto"

    async with session.get(f"{fake.base_url}/v3/customers/{USER}/coupons", params={"apiKey": "x"}) as resp:
        assert resp.status == 401


async def test_hosted_invoices_and_v2(fake, session):
    base = f"{fake.base_url}/v3/customers/{USER}"
    async with session.put(f"{base}/cryptomus/invoice/500", json={"apiKey": KEY}) as resp:
        data = await resp.json()
    assert resp.status == 200 and data["ok"] is True
    assert data["body"].startswith("https://pay.cryptomus.com/pay/")

    async with session.put(f"{base}/pay4bit/invoice/500", json={"apiKey": KEY}) as resp:
        data = await resp.json()
    assert data["body"].startswith("https://api.pay4bit.net/pay?") and KEY not in data["body"]

    async with session.put(f"{base}/cryptomus/invoice/500", json={"apiKey": "bad"}) as resp:
        assert resp.status == 401

    params = {"userId": USER, "key": KEY, "amount": "500"}
    async with session.get(f"{fake.base_url}/cs/checkout/crypto", params=params) as resp:
        data = await resp.json()
    assert data["error"] is False and data["body"].startswith("https://pay.cryptomus.com/pay/")
    async with session.get(f"{fake.base_url}/cs/checkout/crypto", params={**params, "key": "bad"}) as resp:
        assert resp.status == 401
    assert [i["kind"] for i in fake.invoices] == ["cryptomus", "pay4bit", "v2_crypto"]


async def test_fail_next_garbage_then_recovers(fake, session):
    fake.fail_next("/cryptomus/direct/", status=200, body=b"<html>oops", content_type="text/html")
    url = f"{fake.base_url}/v3/customers/{USER}/cryptomus/direct/USDT/BSC/5"
    async with session.put(url, json={"apiKey": KEY}) as resp:
        assert resp.status == 200
        assert await resp.text() == "<html>oops"
        with pytest.raises(aiohttp.ContentTypeError):
            await resp.json()
    assert fake.deposits == {}

    fake.fail_next("/cryptomus/direct/", status=200, body='{"ok": true, "body": {"to_address": null}}',
                   content_type="application/json")
    fake.fail_next("/cryptomus/direct/", count=2)
    async with session.put(url, json={"apiKey": KEY}) as resp:
        assert (await resp.json())["body"]["to_address"] is None
    for _ in range(2):
        async with session.put(url, json={"apiKey": KEY}) as resp:
            assert resp.status == 502 and await resp.text() == "Bad Gateway"
    status, data = await direct(session, fake, amount="5")
    assert status == 200 and data["ok"] is True
    assert len(fake.requests_to("/cryptomus/direct/")) == 5


async def test_fail_next_delay_causes_client_timeout(fake, session):
    fake.fail_next("/cryptomus/transaction/", delay=5.0)
    url = f"{fake.base_url}/v3/customers/{USER}/cryptomus/transaction/whatever"
    started = time.monotonic()
    with pytest.raises(asyncio.TimeoutError):
        async with session.get(url, params={"apiKey": KEY}, timeout=aiohttp.ClientTimeout(total=0.3)):
            pass
    assert time.monotonic() - started < 2


async def test_fail_next_delay_then_real_answer(fake, session):
    fake.fail_next("/balance", delay=0.2, status=None)
    started = time.monotonic()
    async with session.get(f"{fake.base_url}/v3/customers/{USER}/balance", params={"apiKey": KEY}) as resp:
        assert resp.status == 200 and (await resp.json())["ok"] is True
    assert time.monotonic() - started >= 0.2


async def test_stop_does_not_wait_for_pending_delay(session):
    fake = FakeSMSOnline()
    await fake.start()
    fake.fail_next("/balance", delay=30.0)
    task = asyncio.create_task(session.get(f"{fake.base_url}/v3/customers/{USER}/balance", params={"apiKey": KEY}))
    await asyncio.sleep(0.1)
    started = time.monotonic()
    await fake.stop()
    assert time.monotonic() - started < 5
    task.cancel()
    try:
        resp = await task
        resp.release()
    except (asyncio.CancelledError, aiohttp.ClientError):
        pass
