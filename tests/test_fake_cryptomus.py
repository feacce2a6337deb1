"""Tests for the Cryptomus fake (tests/fakes/cryptomus.py), over real HTTP with aiohttp.ClientSession."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import time
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.cryptomus import FakeCryptomus, cryptomus_sign, php_json

MERCHANT = "merchant-uuid-1"
KEY = "test-payment-key"
EXAMPLE_KEY = "EXAMPLE_PAYMENT_API_KEY"


# Copied from payment-apis.md section 2.9 (the reference's verification snippet), renamed to avoid clashes.
def ref_php_json(data: dict) -> str:
    # Same bytes as PHP json_encode($data, JSON_UNESCAPED_UNICODE).
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


def ref_cryptomus_sign(payload: str, api_key: str) -> str:
    return hashlib.md5(base64.b64encode(payload.encode("utf-8")) + api_key.encode("utf-8")).hexdigest()


def verify_payment_webhook(raw_body: bytes, payment_api_key: str) -> dict | None:
    data = json.loads(raw_body)
    received = data.pop("sign", None)
    if not isinstance(received, str) or data.get("type") not in ("payment", "wallet"):
        return None
    return data if hmac.compare_digest(ref_cryptomus_sign(ref_php_json(data), payment_api_key), received) else None


# Section 2.9 test vector, "Body as received".
VECTOR_BODY = (
    '{"type":"payment","uuid":"62f88b36-a9d5-4fa6-aa26-e040c3dbf26d","order_id":"tg-123456-0001","amount":"5.00",'
    '"payment_amount":"5.00","payment_amount_usd":"5.00","merchant_amount":"4.90","commission":"0.10","is_final":true,'
    '"status":"paid","from":"THgEWubVc8tPKXLJ4VZ5zbiiAK7AgqSeGH","wallet_address_uuid":null,"network":"tron",'
    '"currency":"USDT","payer_currency":"USDT","additional_data":"https://t.me/example_bot",'
    '"txid":"6f0d9c8374db57cac0d806251473de754f361c83a03cd805f74aa9da3193486b",'
    '"sign":"ef6b5d7ca2467386b6b050aba263c9d6"}'
)
VECTOR_SIGNED_STRING = (
    '{"type":"payment","uuid":"62f88b36-a9d5-4fa6-aa26-e040c3dbf26d","order_id":"tg-123456-0001","amount":"5.00",'
    '"payment_amount":"5.00","payment_amount_usd":"5.00","merchant_amount":"4.90","commission":"0.10","is_final":true,'
    '"status":"paid","from":"THgEWubVc8tPKXLJ4VZ5zbiiAK7AgqSeGH","wallet_address_uuid":null,"network":"tron",'
    '"currency":"USDT","payer_currency":"USDT","additional_data":"https:\\/\\/t.me\\/example_bot",'
    '"txid":"6f0d9c8374db57cac0d806251473de754f361c83a03cd805f74aa9da3193486b"}'
)


@pytest.fixture
async def fake():
    async with FakeCryptomus() as f:
        yield f


@pytest.fixture
async def session():
    async with aiohttp.ClientSession() as s:
        yield s


async def post(session, fake, path, data=None, *, raw: bytes | None = None, key=KEY, merchant=MERCHANT, sign=None):
    """POST signed over the exact bytes sent. ``data`` is serialised once with json.dumps (default spacing)."""
    body = raw if raw is not None else (json.dumps(data).encode() if data is not None else b"")
    headers = {"Content-Type": "application/json"}
    if merchant is not None:
        headers["merchant"] = merchant
    if sign is None:
        sign = cryptomus_sign(body, key)
    if sign is not False:
        headers["sign"] = sign
    async with session.post(f"{fake.base_url}{path}", data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


def invoice_req(order_id="tg-1-0001", amount="5", **kw):
    return {"amount": amount, "currency": "USD", "order_id": order_id, "to_currency": "USDT", "network": "tron", **kw}


# ------------------------------------------------------------------ signing vectors


def test_request_signing_worked_example():
    body = {"amount": "5", "currency": "USD", "order_id": "tg-123456-0001", "to_currency": "USDT", "network": "tron",
            "url_callback": "https://bot.example.com/cryptomus/webhook"}
    s = php_json(body)
    assert s == ('{"amount":"5","currency":"USD","order_id":"tg-123456-0001","to_currency":"USDT","network":"tron",'
                 '"url_callback":"https:\\/\\/bot.example.com\\/cryptomus\\/webhook"}')
    assert base64.b64encode(s.encode()).decode() == (
        "eyJhbW91bnQiOiI1IiwiY3VycmVuY3kiOiJVU0QiLCJvcmRlcl9pZCI6InRnLTEyMzQ1Ni0wMDAxIiwidG9fY3VycmVuY3kiOiJVU0RUIi"
        "wibmV0d29yayI6InRyb24iLCJ1cmxfY2FsbGJhY2siOiJodHRwczpcL1wvYm90LmV4YW1wbGUuY29tXC9jcnlwdG9tdXNcL3dlYmhvb2si"
        "fQ==")
    assert cryptomus_sign(s, EXAMPLE_KEY) == "3721b7ec46b46f05445bbd43f635f3d8"
    assert cryptomus_sign(s.encode(), EXAMPLE_KEY) == "3721b7ec46b46f05445bbd43f635f3d8"
    unescaped = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    assert cryptomus_sign(unescaped, EXAMPLE_KEY) == "684743a1f63fbb034a86023f488a70b1"
    assert cryptomus_sign("", EXAMPLE_KEY) == "6c9c849def21aee13af4d6af9ed573b4"
    assert cryptomus_sign(b"", EXAMPLE_KEY) == hashlib.md5(EXAMPLE_KEY.encode()).hexdigest()
    assert cryptomus_sign("{}", EXAMPLE_KEY) == "8f80d302ac8d2696012da34d54acedb5"


def test_webhook_signature_test_vector():
    data = json.loads(VECTOR_BODY)
    received = data.pop("sign")
    assert php_json(data) == VECTOR_SIGNED_STRING
    assert cryptomus_sign(php_json(data), EXAMPLE_KEY) == "ef6b5d7ca2467386b6b050aba263c9d6" == received
    no_escape = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    assert cryptomus_sign(no_escape, EXAMPLE_KEY) == "1b2602b0e1a1bc90ff5bd45c5cea57b8"
    assert verify_payment_webhook(VECTOR_BODY.encode(), EXAMPLE_KEY) == data
    assert verify_payment_webhook(VECTOR_BODY.encode(), "other-key") is None


# ------------------------------------------------------------------ auth


async def test_base_url_has_no_v1_suffix(fake):
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", fake.base_url)


async def test_unsigned_and_badly_signed_requests_are_401(fake, session):
    body = invoice_req()
    unauthorized = {"state": 1, "message": "Unauthorized"}
    assert await post(session, fake, "/v1/payment", body, sign=False) == (401, unauthorized)
    assert await post(session, fake, "/v1/payment", body, merchant=None) == (401, unauthorized)
    assert await post(session, fake, "/v1/payment", body, merchant="other-merchant") == (401, unauthorized)
    assert await post(session, fake, "/v1/payment", body, key="wrong-key") == (401, unauthorized)
    assert await post(session, fake, "/v1/payment", body, sign="0" * 32) == (401, unauthorized)
    assert await post(session, fake, "/v1/payment/services", None, sign=False) == (401, unauthorized)
    assert fake.last_order_id() is None
    assert len(fake.requests) == 6


async def test_sign_is_checked_against_raw_bytes(fake, session):
    data = invoice_req(url_callback="https://bot.example.com/cb")
    compact = json.dumps(data, separators=(",", ":")).encode()
    spaced = json.dumps(data).encode()
    # Signed over one serialisation, sent with another: same JSON, different bytes -> rejected.
    status, _ = await post(session, fake, "/v1/payment", raw=spaced, sign=cryptomus_sign(compact, KEY))
    assert status == 401
    # PHP-style bytes (slashes escaped) signed over themselves are fine.
    php_bytes = php_json(data).encode()
    status, res = await post(session, fake, "/v1/payment", raw=php_bytes)
    assert status == 200 and res["state"] == 0
    rec = fake.requests[-1]
    assert rec.body == php_bytes and rec.json == data and rec.method == "POST" and rec.path == "/v1/payment"
    assert rec.headers["sign"] == cryptomus_sign(php_bytes, KEY) and rec.headers["MERCHANT"] == MERCHANT


# ------------------------------------------------------------------ create invoice


async def test_create_invoice_success_shape(fake, session):
    before = time.time()
    status, res = await post(session, fake, "/v1/payment", invoice_req(additional_data="https://t.me/x", lifetime=900))
    assert status == 200 and res["state"] == 0
    inv = res["result"]
    assert list(inv) == ["uuid", "order_id", "amount", "payment_amount", "payer_amount", "discount_percent",
                         "discount", "payer_currency", "currency", "merchant_amount", "network", "address", "from",
                         "txid", "payment_status", "url", "expired_at", "status", "is_final", "additional_data",
                         "created_at", "updated_at"]
    assert re.fullmatch(r"[0-9a-f-]{36}", inv["uuid"])
    assert inv["order_id"] == "tg-1-0001"
    assert inv["amount"] == "5" and inv["currency"] == "USD"
    assert inv["payer_amount"] == "5.00000000" and inv["payer_currency"] == "USDT"
    assert inv["payment_amount"] is None and inv["merchant_amount"] is None
    assert inv["discount"] == "0.00000000" and inv["discount_percent"] is None
    assert inv["network"] == "tron"
    assert inv["address"].startswith("T") and len(inv["address"]) == 34
    assert inv["from"] is None and inv["txid"] is None
    assert inv["status"] == inv["payment_status"] == "check" and inv["is_final"] is False
    assert inv["url"] == f"https://pay.cryptomus.com/pay/{inv['uuid']}"
    assert isinstance(inv["expired_at"], int) and abs(inv["expired_at"] - (before + 900)) < 5
    assert inv["additional_data"] == "https://t.me/x"
    assert inv["created_at"].endswith("+03:00")
    assert fake.last_order_id() == "tg-1-0001"
    assert fake.invoice("tg-1-0001") == inv
    assert fake.invoice_request("tg-1-0001")["lifetime"] == 900


async def test_create_converts_with_fake_rates(fake, session):
    _, res = await post(session, fake, "/v1/payment", invoice_req("o-btc", amount="30", to_currency="BTC",
                                                                  network="btc"))
    assert res["result"]["payer_amount"] == "0.00050000" and res["result"]["payer_currency"] == "BTC"
    assert res["result"]["address"].startswith("bc1q")
    # BTC has a single network: no network needed for an address.
    _, res = await post(session, fake, "/v1/payment", {"amount": "0.5", "currency": "BTC", "order_id": "o-btc2"})
    inv = res["result"]
    assert inv["network"] == "btc" and inv["address"] and inv["payer_amount"] == "0.50000000"
    # Fiat only: no coin, no address.
    _, res = await post(session, fake, "/v1/payment", {"amount": "15", "currency": "USD", "order_id": "o-usd"})
    inv = res["result"]
    assert inv["payer_currency"] is None and inv["address"] is None and inv["network"] is None
    assert inv["payer_amount"] is None
    _, res = await post(session, fake, "/v1/payment", invoice_req("o-bsc", amount="12.34", network="bsc"))
    assert res["result"]["payer_amount"] == "12.34000000" and re.fullmatch(r"0x[0-9a-f]{40}", res["result"]["address"])


async def test_same_order_id_returns_same_invoice(fake, session):
    _, first = await post(session, fake, "/v1/payment", invoice_req("dup-1"))
    status, second = await post(session, fake, "/v1/payment", invoice_req("dup-1", amount="99"))
    assert status == 200
    assert second["result"] == first["result"]
    assert second["result"]["amount"] == "5"
    assert len(fake.invoices) == 1


async def test_unknown_network(fake, session):
    status, res = await post(session, fake, "/v1/payment", invoice_req(network="solana-x"))
    assert status == 422 and res == {"state": 1, "message": "The network was not found"}
    # A service that exists but is unavailable counts as not found.
    status, res = await post(session, fake, "/v1/payment", invoice_req(to_currency="DOGE", network="doge"))
    assert res == {"state": 1, "message": "The network was not found"}
    assert fake.last_order_id() is None


async def test_currency_errors(fake, session):
    status, res = await post(session, fake, "/v1/payment", invoice_req(currency="XYZ"))
    assert status == 422 and res == {"state": 1, "message": "The currency was not found"}
    status, res = await post(session, fake, "/v1/payment", invoice_req(to_currency="EUR"))
    assert res == {"state": 1, "message": "Not found service to_currency"}


async def test_minimum_and_maximum_amount(fake, session):
    status, res = await post(session, fake, "/v1/payment", invoice_req(amount="0.5"))
    assert status == 422 and res == {"state": 1, "message": "Minimum amount 1 USDT"}
    _, res = await post(session, fake, "/v1/payment", invoice_req(amount="5", to_currency="BTC", network="btc"))
    assert res["message"] == "Minimum amount 0.0001 BTC"
    _, res = await post(session, fake, "/v1/payment", invoice_req(amount="20000000"))
    assert res["message"] == "Maximum amount 10000000 USDT"
    assert fake.last_order_id() is None


async def test_validation_errors(fake, session):
    status, res = await post(session, fake, "/v1/payment", {"currency": "USD", "order_id": "a"})
    assert status == 422 and res == {"state": 1, "errors": {"amount": ["validation.required"]}}
    _, res = await post(session, fake, "/v1/payment", {"amount": 5, "currency": "USD", "order_id": "a"})
    assert res["errors"] == {"amount": ["validation.string"]}
    _, res = await post(session, fake, "/v1/payment", {"amount": "10,28", "currency": "USD", "order_id": "a"})
    assert res["errors"] == {"amount": ["validation.numeric"]}
    _, res = await post(session, fake, "/v1/payment", {"amount": "1"})
    assert res["errors"] == {"currency": ["validation.required"], "order_id": ["validation.required"]}
    _, res = await post(session, fake, "/v1/payment", invoice_req("bad id!"))
    assert res["errors"] == {"order_id": ["validation.alpha_dash"]}
    _, res = await post(session, fake, "/v1/payment", invoice_req("x" * 129))
    assert res["errors"] == {"order_id": ["validation.max.string"]}
    _, res = await post(session, fake, "/v1/payment", invoice_req(url_callback="nope"))
    assert res["errors"] == {"url_callback": ["validation.min.string"]}
    _, res = await post(session, fake, "/v1/payment", invoice_req(url_callback="not a url"))
    assert res["errors"] == {"url_callback": ["validation.url"]}
    _, res = await post(session, fake, "/v1/payment", invoice_req(lifetime=100))
    assert res["errors"] == {"lifetime": ["validation.min.numeric"]}
    _, res = await post(session, fake, "/v1/payment", invoice_req(lifetime=50000))
    assert res["errors"] == {"lifetime": ["validation.max.numeric"]}
    assert fake.last_order_id() is None


# ------------------------------------------------------------------ info, services, balance


async def test_info_after_paid(fake, session):
    _, created = await post(session, fake, "/v1/payment", invoice_req("pay-1"))
    fake.set_status("pay-1", "paid")
    status, res = await post(session, fake, "/v1/payment/info", {"order_id": "pay-1"})
    assert status == 200 and res["state"] == 0
    inv = res["result"]
    assert inv["uuid"] == created["result"]["uuid"]
    assert inv["status"] == inv["payment_status"] == "paid" and inv["is_final"] is True
    assert inv["payment_amount"] == "5.00000000" and inv["merchant_amount"] == "4.90000000"
    assert inv["txid"] and inv["from"]
    # by uuid; order_id wins when both are sent
    _, by_uuid = await post(session, fake, "/v1/payment/info", {"uuid": inv["uuid"]})
    assert by_uuid["result"]["order_id"] == "pay-1"
    _, both = await post(session, fake, "/v1/payment/info", {"uuid": "nope", "order_id": "pay-1"})
    assert both["result"]["uuid"] == inv["uuid"]


async def test_info_errors(fake, session):
    status, res = await post(session, fake, "/v1/payment/info", {"order_id": "missing"})
    assert status == 404 and res == {"state": 1, "message": "Payment not found"}
    status, res = await post(session, fake, "/v1/payment/info", {})
    assert status == 422 and res == {"state": 1, "errors": {"uuid": ["validation.required_without"],
                                                             "order_id": ["validation.required_without"]}}


async def test_set_status_finality_defaults(fake, session):
    await post(session, fake, "/v1/payment", invoice_req("st-1"))
    for st, final in [("confirm_check", False), ("wrong_amount_waiting", False), ("cancel", True),
                      ("refund_process", False), ("refund_paid", True), ("paid_over", True)]:
        assert fake.set_status("st-1", st)["is_final"] is final
    inv = fake.set_status("st-1", "check", is_final=True, txid="abc")
    assert inv["status"] == "check" and inv["is_final"] is True and inv["txid"] == "abc"


async def test_expired_invoice_reads_as_cancel(fake, session):
    await post(session, fake, "/v1/payment", invoice_req("exp-1"))
    fake.invoice("exp-1")["expired_at"] = int(time.time()) - 1
    _, res = await post(session, fake, "/v1/payment/info", {"order_id": "exp-1"})
    assert res["result"]["status"] == "cancel" and res["result"]["is_final"] is True


async def test_services_empty_body_or_braces(fake, session):
    status, res = await post(session, fake, "/v1/payment/services", raw=b"")
    assert status == 200 and res["state"] == 0
    assert await post(session, fake, "/v1/payment/services", raw=b"{}") == (status, res)
    assert (await post(session, fake, "/v1/payment/services", raw=b"[]"))[0] == 200
    # Doc mismatch: sending {} while signing "" is rejected (the sign covers the bytes sent).
    assert (await post(session, fake, "/v1/payment/services", raw=b"{}", sign=cryptomus_sign("", KEY)))[0] == 401
    services = res["result"]
    for s in services:
        assert set(s) == {"network", "currency", "is_available", "limit", "commission"}
        assert set(s["limit"]) == {"min_amount", "max_amount"} and set(s["commission"]) == {"fee_amount", "percent"}
        assert s["network"] == s["network"].lower()
    pairs = {(s["currency"], s["network"]) for s in services if s["is_available"]}
    assert {("USDT", "tron"), ("USDT", "bsc"), ("USDT", "eth"), ("BTC", "btc"), ("ETH", "eth"), ("LTC", "ltc"),
            ("TRX", "tron"), ("BNB", "bsc"), ("TON", "ton")} <= pairs
    assert any(not s["is_available"] for s in services)
    usdt_tron = next(s for s in services if (s["currency"], s["network"]) == ("USDT", "tron"))
    assert usdt_tron["limit"] == {"min_amount": "1.00000000", "max_amount": "10000000.00000000"}
    btc = next(s for s in services if s["currency"] == "BTC")
    assert btc["limit"]["min_amount"] == "0.00010000"


async def test_custom_services(session):
    custom = [{"network": "polygon", "currency": "USDC", "is_available": True,
               "limit": {"min_amount": "3.00000000", "max_amount": "1000.00000000"},
               "commission": {"fee_amount": "0.00", "percent": "1.00"}}]
    async with FakeCryptomus(merchant_id="m-2", payment_key="k-2", services=custom) as fake:
        status, res = await post(session, fake, "/v1/payment/services", merchant="m-2", key="k-2")
        assert status == 200 and res["result"] == custom
        _, res = await post(session, fake, "/v1/payment", invoice_req(amount="2", to_currency="USDC",
                                                                      network="polygon"), merchant="m-2", key="k-2")
        assert res == {"state": 1, "message": "Minimum amount 3 USDC"}
        _, res = await post(session, fake, "/v1/payment", invoice_req(), merchant="m-2", key="k-2")
        assert res == {"state": 1, "message": "Not found service to_currency"}


async def test_balance(fake, session):
    status, res = await post(session, fake, "/v1/balance", raw=b"")
    assert status == 200 and res["state"] == 0
    bal = res["result"][0]["balance"]
    assert set(bal) == {"merchant", "user"}
    assert {"uuid", "balance", "currency_code", "balance_usd"} <= set(bal["merchant"][0])


async def test_responses_escape_slashes_like_php(fake, session):
    body = json.dumps(invoice_req("esc-1")).encode()
    async with session.post(f"{fake.base_url}/v1/payment", data=body,
                            headers={"merchant": MERCHANT, "sign": cryptomus_sign(body, KEY)}) as resp:
        text = await resp.text()
    assert "https:\\/\\/pay.cryptomus.com\\/pay\\/" in text
    assert json.loads(text)["result"]["url"].startswith("https://pay.cryptomus.com/pay/")


# ------------------------------------------------------------------ fault injection


async def test_fail_next(fake, session):
    fake.fail_next("/v1/payment", exact=True, status=500,
                   body={"message": "Server error, #1", "code": 500, "error": None})
    status, res = await post(session, fake, "/v1/payment/info", {"order_id": "x"})
    assert status == 404  # exact match: info is not affected
    status, res = await post(session, fake, "/v1/payment", invoice_req("f-1"))
    assert status == 500 and res == {"message": "Server error, #1", "code": 500, "error": None}
    assert fake.last_order_id() is None
    status, _ = await post(session, fake, "/v1/payment", invoice_req("f-1"))
    assert status == 200

    fake.fail_next("/v1/payment/services", count=2)
    for _ in range(2):
        async with session.post(f"{fake.base_url}/v1/payment/services", data=b"",
                                headers=fake.headers_for(b"")) as resp:
            assert resp.status == 502 and await resp.text() == "Bad Gateway"
    assert (await post(session, fake, "/v1/payment/services"))[0] == 200


async def test_fail_next_delay(fake, session):
    fake.fail_next("/v1/payment/info", status=None, delay=0.3)
    t0 = time.monotonic()
    status, _ = await post(session, fake, "/v1/payment/info", {"order_id": "x"})
    assert status == 404 and time.monotonic() - t0 >= 0.25


# ------------------------------------------------------------------ webhooks


async def test_webhook_body_matches_cryptomus_format(fake, session):
    await post(session, fake, "/v1/payment", invoice_req("wh-1", additional_data="https://t.me/example_bot"))
    fake.set_status("wh-1", "paid")
    raw = fake.webhook_body("wh-1")
    text = raw.decode()
    assert "https:\\/\\/t.me\\/example_bot" in text and " " not in text
    data = verify_payment_webhook(raw, KEY)
    assert data is not None
    assert list(json.loads(raw)) == ["type", "uuid", "order_id", "amount", "payment_amount", "payment_amount_usd",
                                     "merchant_amount", "commission", "is_final", "status", "from",
                                     "wallet_address_uuid", "network", "currency", "payer_currency",
                                     "additional_data", "txid", "sign"]
    inv = fake.invoice("wh-1")
    assert data["type"] == "payment" and data["uuid"] == inv["uuid"] and data["order_id"] == "wh-1"
    assert data["status"] == "paid" and data["is_final"] is True
    assert data["amount"] == "5" and data["currency"] == "USD" and data["payer_currency"] == "USDT"
    assert data["payment_amount"] == "5.00000000" and data["payment_amount_usd"] == "5.00"
    assert data["merchant_amount"] == "4.90000000" and data["commission"] == "0.10000000"
    assert data["network"] == "tron" and data["txid"] == inv["txid"] and data["wallet_address_uuid"] is None
    assert data["additional_data"] == "https://t.me/example_bot"
    # Without slash escaping the same data does not verify.
    assert cryptomus_sign(json.dumps(data, ensure_ascii=False, separators=(",", ":")), KEY) != json.loads(raw)["sign"]


async def test_webhook_overrides_and_forgery(fake, session):
    await post(session, fake, "/v1/payment", invoice_req("wh-2"))
    fake.set_status("wh-2", "wrong_amount", payment_amount="2.5", payment_amount_usd="2.50", txid="t/x")
    data = verify_payment_webhook(fake.webhook_body("wh-2", additional_data="ünï/code", extra={"payer_amount": "5"}),
                                  KEY)
    assert data["status"] == "wrong_amount" and data["payment_amount"] == "2.5"
    assert data["payment_amount_usd"] == "2.50" and data["txid"] == "t/x"
    assert data["additional_data"] == "ünï/code" and list(data)[-1] == "payer_amount"
    override = verify_payment_webhook(fake.webhook_body("wh-2", status="cancel"), KEY)
    assert override["status"] == "cancel" and fake.invoice("wh-2")["status"] == "wrong_amount"
    forged = fake.forge_webhook_body("wh-2")
    assert verify_payment_webhook(forged, KEY) is None
    assert json.loads(forged)["order_id"] == "wh-2"


async def test_send_webhook(fake, session):
    received: list[tuple[bytes, str, str | None]] = []

    async def handler(request: web.Request) -> web.Response:
        received.append((await request.read(), request.content_type, request.remote))
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/cryptomus/webhook", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    url = f"http://127.0.0.1:{runner.addresses[0][1]}/cryptomus/webhook"
    try:
        await post(session, fake, "/v1/payment", invoice_req("wh-3", url_callback=url))
        fake.set_status("wh-3", "paid")
        assert await fake.send_webhook(url, "wh-3") == (200, "ok")
        assert await fake.send_webhook(None, "wh-3", body=fake.forge_webhook_body("wh-3")) == (200, "ok")
    finally:
        await runner.cleanup()
    (raw, ctype, remote), (forged, _, _) = received
    assert raw == fake.webhook_body("wh-3") and ctype == "application/json" and remote == "127.0.0.1"
    assert verify_payment_webhook(raw, KEY)["status"] == "paid"
    assert verify_payment_webhook(forged, KEY) is None
    assert [w.status for w in fake.webhooks_sent] == [200, 200]


async def test_stop_cuts_delays_short():
    fake = FakeCryptomus()
    await fake.start()
    fake.fail_next("/v1/payment/services", delay=30)
    async with aiohttp.ClientSession() as s:
        task = asyncio.create_task(s.post(f"{fake.base_url}/v1/payment/services", data=b"",
                                          headers=fake.headers_for(b"")))
        await asyncio.sleep(0.2)
        t0 = time.monotonic()
        await fake.stop()
        assert time.monotonic() - t0 < 5
        try:
            resp = await task
            resp.release()
        except aiohttp.ClientError:
            pass


def test_decimal_sanity():
    assert Decimal("0.00050000") == Decimal(30) / Decimal(60000)
