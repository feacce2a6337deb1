"""Tests for the Smart CloudPay fake (tests/fakes/smartcloudpay.py), over real HTTP with aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import re
import time

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.smartcloudpay import FakeSmartCloudPay

KEY = "sk_test_key"
MERCHANT = "merchant-1"
AUTH = {"x-api-key": KEY, "merchant-id": MERCHANT}
USDT_BSC = {"totalusd": 5.15, "currency": "USDT", "network": "bsc", "customer_name": "tg:42",
            "notification_emails": "ops@example.com"}


@pytest.fixture
async def fake():
    async with FakeSmartCloudPay() as f:
        yield f


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def call(session, method, url, *, json=None, headers=AUTH, params=None, data=None):
    async with session.request(method, url, json=json, headers=headers, params=params, data=data) as resp:
        return resp.status, await resp.json(content_type=None)


async def create(session, fake, body=None, headers=AUTH):
    return await call(session, "POST", f"{fake.base_url}/payment/invoice/create",
                      json=USDT_BSC if body is None else body, headers=headers)


async def test_base_url_has_api_suffix(fake):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/api", fake.base_url)


@pytest.mark.parametrize("headers", [
    {},
    {"x-api-key": KEY},
    {"merchant-id": MERCHANT},
    {"x-api-key": "wrong", "merchant-id": MERCHANT},
    {"x-api-key": KEY, "merchant_id": MERCHANT},  # older revision's underscore header is refused
])
async def test_unauthorized(fake, session, headers):
    status, data = await create(session, fake, headers=headers)
    assert status == 401
    assert data == {"success": False, "message": "Unauthorized"}
    status, _ = await call(session, "GET", f"{fake.base_url}/payout/wallets", headers=headers)
    assert status == 401
    assert fake.invoices == {}
    assert len(fake.requests) == 2  # recorded even when refused


async def test_create_with_totalusd(fake, session):
    before = int(time.time())
    status, data = await create(session, fake)
    assert status == 200
    assert data["success"] is True
    inv = data["data"]
    assert set(inv) == {"invoice_id", "address", "amount", "totalusd", "currency", "network", "status",
                        "expires_at", "payment_url", "callback_url"}  # echoed, token included (issue 8)
    assert re.fullmatch(r"INV-\d+", inv["invoice_id"])
    assert re.fullmatch(r"0x[0-9a-f]{40}", inv["address"])
    assert inv["amount"] == "5.15" and inv["totalusd"] == "5.15"
    assert (inv["currency"], inv["network"], inv["status"]) == ("USDT", "bsc", "pending")
    assert before + 3600 <= inv["expires_at"] <= int(time.time()) + 3600
    assert inv["payment_url"] == f"https://www.smartcloudpay.com/pay/{inv['invoice_id']}"
    assert fake.last_invoice_id() == inv["invoice_id"]
    rec = fake.requests_to("/invoice/create")[0]
    assert rec.method == "POST" and rec.path == "/api/payment/invoice/create"
    assert rec.headers["x-api-key"] == KEY and rec.json["totalusd"] == 5.15
    assert "5.15" in rec.text


async def test_create_native_amount_tron_and_default_network(fake, session):
    status, data = await create(session, fake, {"amount": 0.5, "currency": "BNB", "network": "bsc",
                                                "customer_name": "x", "notification_emails": "a@b.c"})
    assert status == 200
    assert data["data"]["amount"] == "0.5" and data["data"]["totalusd"] == "300.00"

    status, data = await create(session, fake, {**USDT_BSC, "network": "tron", "totalusd": 10})
    assert status == 200
    assert data["data"]["address"].startswith("T") and len(data["data"]["address"]) == 34

    body = {k: v for k, v in USDT_BSC.items() if k != "network"}
    status, data = await create(session, fake, body)
    assert status == 200 and data["data"]["network"] == "evm"


async def test_callback_url_is_stored(fake, session):
    status, data = await create(session, fake, {**USDT_BSC, "callback_url": "http://bot/cb/tok"})
    assert status == 200
    assert fake.invoice(data["data"]["invoice_id"])["callback_url"] == "http://bot/cb/tok"


@pytest.mark.parametrize("override", [
    {"totalusd": "5.15"},
    {"totalusd": True},
    {"totalusd": 0},
    {"totalusd": -1},
])
async def test_bad_amount_refused(fake, session, override):
    status, data = await create(session, fake, {**USDT_BSC, **override})
    assert status == 400
    assert data["success"] is False and data["message"]
    assert fake.invoices == {}


async def test_string_native_amount_refused(fake, session):
    body = {"amount": "0.5", "currency": "BNB", "network": "bsc", "customer_name": "x", "notification_emails": "e"}
    status, data = await create(session, fake, body)
    assert status == 400 and data["success"] is False


@pytest.mark.parametrize("missing", ["currency", "customer_name", "notification_emails", "totalusd"])
async def test_missing_required_refused(fake, session, missing):
    body = {k: v for k, v in USDT_BSC.items() if k != missing}
    status, data = await create(session, fake, body)
    assert status == 400 and data["success"] is False


@pytest.mark.parametrize("currency,network", [("BNB", "tron"), ("BTC", "bsc"), ("USDT", "BSC"), ("TRX", "bsc")])
async def test_unsupported_pair_refused(fake, session, currency, network):
    status, data = await create(session, fake, {**USDT_BSC, "currency": currency, "network": network})
    assert status == 400 and data["success"] is False
    assert fake.invoices == {}


async def test_pairs_configurable(fake, session):
    fake.pairs.add(("USDC", "bsc"))
    status, _ = await create(session, fake, {**USDT_BSC, "currency": "USDC"})
    assert status == 200


async def test_get_invoice_and_set_status(fake, session):
    _, data = await create(session, fake)
    inv_id = data["data"]["invoice_id"]
    status, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
    assert status == 200 and got["success"] is True
    d = got["data"]
    assert set(d) == {"invoice_id", "status", "amount", "received_amount", "currency", "network", "tx_hash",
                      "totalusd", "address"}
    assert (d["invoice_id"], d["status"], d["tx_hash"]) == (inv_id, "pending", None)
    assert d["address"] == data["data"]["address"]

    fake.set_status(inv_id, "paid")
    _, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
    assert got["data"]["status"] == "paid"
    assert got["data"]["received_amount"] == "5.15"
    assert got["data"]["tx_hash"].startswith("0x")

    fake.set_status(inv_id, "paid", received_amount="5.00", tx_hash="0xfeed")
    _, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
    assert (got["data"]["received_amount"], got["data"]["tx_hash"]) == ("5.00", "0xfeed")


async def test_status_field_knob(fake, session):
    _, data = await create(session, fake)
    inv_id = data["data"]["invoice_id"]
    fake.status_field = "payment_status"
    _, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
    assert got["data"]["payment_status"] == "pending" and "status" not in got["data"]
    fake.status_field = None
    _, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
    assert "status" not in got["data"] and "payment_status" not in got["data"]


async def test_get_unknown_invoice_404(fake, session):
    status, data = await call(session, "GET", f"{fake.base_url}/invoice/INV-0")
    assert status == 404 and data["success"] is False


async def test_cancel(fake, session):
    _, data = await create(session, fake)
    inv_id = data["data"]["invoice_id"]
    status, got = await call(session, "POST", f"{fake.base_url}/payment/invoice/cancel/{inv_id}")
    assert (status, got) == (200, {"success": True})
    assert fake.invoice(inv_id)["status"] == "cancelled"
    _, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
    assert got["data"]["status"] == "cancelled"

    status, _ = await call(session, "POST", f"{fake.base_url}/payment/invoice/cancel/INV-0")
    assert status == 404


async def test_cancel_paid_invoice_refused(fake, session):
    _, data = await create(session, fake)
    inv_id = data["data"]["invoice_id"]
    fake.set_status(inv_id, "paid")
    status, got = await call(session, "POST", f"{fake.base_url}/payment/invoice/cancel/{inv_id}")
    assert status == 400 and got["success"] is False
    assert fake.invoice(inv_id)["status"] == "paid"


async def test_create_shapes(fake, session):
    fake.create_shape = "flat"
    status, data = await create(session, fake)
    assert status == 200 and data["success"] is True
    assert "data" not in data and "invoice_id" not in data
    assert re.fullmatch(r"INV-\d+", data["id"]) and data["address"] and data["amount"] == "5.15"
    assert data["id"] == fake.last_invoice_id()

    fake.create_shape = "no_address"
    status, data = await create(session, fake)
    assert status == 200
    assert "address" not in data["data"] and data["data"]["invoice_id"] == fake.last_invoice_id()
    assert "address" not in str(data)

    fake.create_shape = "data"
    _, data = await create(session, fake)
    assert data["data"]["address"]


async def test_webhook_body_and_send(fake, session):
    received: list[dict] = []

    async def handler(request: web.Request) -> web.Response:
        received.append({"path": request.path, "json": await request.json(), "headers": dict(request.headers)})
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cb/{token}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        port = runner.addresses[0][1]
        cb = f"http://127.0.0.1:{port}/cb/secret-token"
        _, data = await create(session, fake, {**USDT_BSC, "callback_url": cb})
        inv_id = data["data"]["invoice_id"]

        body = fake.webhook_body(inv_id)
        assert set(body) == {"status", "invoice_id", "amount", "currency", "tx_hash", "received_amount"}
        assert (body["status"], body["invoice_id"], body["amount"], body["currency"], body["received_amount"]) == \
            ("paid", inv_id, "5.15", "USDT", "5.15")

        status, text = await fake.send_webhook(fake.invoice(inv_id)["callback_url"], inv_id, received_amount="5.00",
                                               currency="BNB")
        assert (status, text) == (200, "ok")
        assert received[0]["path"] == "/cb/secret-token"
        assert received[0]["json"]["received_amount"] == "5.00" and received[0]["json"]["currency"] == "BNB"
        assert not any("sign" in h.lower() for h in received[0]["headers"])
        # the webhook is only a hint: the API still reports pending
        _, got = await call(session, "GET", f"{fake.base_url}/invoice/{inv_id}")
        assert got["data"]["status"] == "pending"

        status, _ = await fake.send_webhook(cb, inv_id, body={"status": "paid"})
        assert status == 200 and received[1]["json"] == {"status": "paid"}
        assert len(fake.webhooks_sent) == 2
    finally:
        await runner.cleanup()


async def test_payouts(fake, session):
    payout = {"recipient_address": "0xe24B4Ea27754e92Dd0D25f28e3B6C39707B7fe64", "amount": 0.025,
              "currency": "USDT", "chain": "bsc", "reference_wp": "WP1"}
    status, data = await call(session, "POST", f"{fake.base_url}/payout/execute", json=payout)
    assert status == 200 and data["success"] is True
    assert data["data"]["reference_wp"] == "WP1" and data["data"]["status"] == "processing"
    assert data["data"]["tx_hash"] is None and data["data"]["amount"] == "0.025"

    fake.set_payout_status("WP1", "completed", tx_hash="0x1")
    status, again = await call(session, "POST", f"{fake.base_url}/payout/execute", json={**payout, "amount": 99})
    assert status == 200 and again["data"]["status"] == "completed" and again["data"]["amount"] == "0.025"
    assert len(fake.payouts) == 1

    await call(session, "POST", f"{fake.base_url}/payout/execute", json={**payout, "reference_wp": "WP2"})
    _, hist = await call(session, "GET", f"{fake.base_url}/payout/history", params={"limit": "5"})
    assert [p["reference_wp"] for p in hist["data"]] == ["WP2", "WP1"]
    _, hist = await call(session, "GET", f"{fake.base_url}/payout/history", params={"limit": "1"})
    assert len(hist["data"]) == 1

    status, st = await call(session, "POST", f"{fake.base_url}/payout/status", json={"reference_wp": "WP1"})
    assert status == 200 and st["data"]["tx_hash"] == "0x1"
    status, _ = await call(session, "POST", f"{fake.base_url}/payout/status", json={"reference_wp": "nope"})
    assert status == 404
    status, _ = await call(session, "POST", f"{fake.base_url}/payout/execute", json={**payout, "amount": "1"})
    assert status == 400


async def test_utilities(fake, session):
    status, data = await call(session, "GET", f"{fake.base_url}/payout/wallets")
    assert status == 200 and {w["network"] for w in data["data"]} == {"bsc", "tron"}
    _, data = await call(session, "GET", f"{fake.base_url}/payout/balance/prepaid")
    assert data == {"success": True, "data": {"credits": 100}}
    _, data = await call(session, "GET", f"{fake.base_url}/payout/balance/chain",
                         params={"network": "BSC", "currency": "BNB"})
    assert data == {"success": True, "data": {"balance": "1.5", "network": "BSC", "currency": "BNB"}}
    status, data = await call(session, "GET", f"{fake.base_url}/public/check-ip", headers={})
    assert (status, data) == (200, {"your_ip": "127.0.0.1"})


async def test_fail_next(fake, session):
    fake.fail_next("/invoice/create")
    async with session.post(f"{fake.base_url}/payment/invoice/create", json=USDT_BSC, headers=AUTH) as resp:
        assert resp.status == 502 and await resp.text() == "Bad Gateway"
    assert fake.invoices == {}
    status, _ = await create(session, fake)
    assert status == 200

    fake.fail_next("/invoice/", status=None, delay=0.2, method="GET")
    t0 = asyncio.get_running_loop().time()
    status, _ = await call(session, "GET", f"{fake.base_url}/invoice/{fake.last_invoice_id()}")
    assert status == 200 and asyncio.get_running_loop().time() - t0 >= 0.19
