"""SMSOnlineGateway against the FakeSMSOnline server, over real HTTP on 127.0.0.1.

Contract: shared/reference/payment-apis.md section 1 (V3 "Get direct wallet" and "Get transaction status").
"""
from __future__ import annotations

import json
import logging
from decimal import Decimal

import pytest

from services.gateways.base import (
    CouponRejected,
    CreatedDeposit,
    DepositRequest,
    GatewayError,
    GatewayMisconfigured,
    GatewayUnavailable,
    PairUnavailable,
    PaymentState,
)
from services.gateways.smsonline import SMSOnlineGateway
from tests.fakes.smsonline import FakeSMSOnline

USER = "operator-7"
KEY = "test-api-key-5f1c9e"  # distinctive, so a leak into a message or a log is unambiguous
DIRECT = "/cryptomus/direct/"
TRANSACTION = "/cryptomus/transaction/"


@pytest.fixture
async def fake():
    async with FakeSMSOnline(user_id=USER, api_key=KEY, coupons={"SAVE10": {"percentage": 10}}) as server:
        yield server


@pytest.fixture
async def gateway(fake):
    gw = SMSOnlineGateway(fake.base_url, USER, KEY, timeout_seconds=0.5)
    yield gw
    await gw.close()


def request(amount_cents: int = 515, coin: str = "USDT", network: str = "BSC",
            coupon: str | None = None) -> DepositRequest:
    return DepositRequest(deposit_id=1, user_id=42, coin=coin, network=network, amount_cents=amount_cents,
                          coupon_code=coupon)


async def paid_order(fake: FakeSMSOnline, gateway: SMSOnlineGateway, status: str) -> str:
    created = await gateway.create_deposit(request())
    fake.set_status(created.order_id, status)
    return created.order_id


# --- create_deposit ---------------------------------------------------------------------------------------------

async def test_create_deposit_sends_documented_request_and_returns_the_wallet(fake, gateway):
    created = await gateway.create_deposit(request(515, "USDT", "BSC"))

    [sent] = fake.requests
    assert sent.method == "PUT"
    assert sent.path == f"/v3/customers/{USER}/cryptomus/direct/USDT/BSC/5.15"
    assert sent.json == {"apiKey": KEY}  # no couponCode key at all when the user gave none
    assert "apiKey" not in sent.query  # PUT carries the key in the body only

    wallet = fake.deposits[created.order_id]
    assert isinstance(created, CreatedDeposit)
    assert created.order_id == fake.last_order_id()
    assert created.address == wallet["to_address"]
    assert isinstance(created.pay_amount, Decimal)
    assert created.pay_amount == Decimal(wallet["amountInCrypto"]) == Decimal("5.15")
    assert created.pay_currency == "USDT"
    assert created.expires_at == wallet["expire_at"]
    assert created.payment_url == wallet["url"]
    assert created.quoted_cents == 515


async def test_create_deposit_whole_dollars_use_an_integer_path_segment(fake, gateway):
    created = await gateway.create_deposit(request(500, "USDT", "TRON"))
    assert fake.requests[-1].path == f"/v3/customers/{USER}/cryptomus/direct/USDT/TRON/5"
    assert created.quoted_cents == 500
    assert created.address.startswith("T")


@pytest.mark.parametrize(("cents", "segment"), [(100, "1"), (505, "5.05"), (1050, "10.50"), (1_000_000, "10000")])
async def test_amount_path_segment_is_usd(fake, gateway, cents, segment):
    created = await gateway.create_deposit(request(cents, "USDT", "TRON"))
    assert fake.requests[-1].path == f"/v3/customers/{USER}/cryptomus/direct/USDT/TRON/{segment}"
    assert created.quoted_cents == cents


async def test_create_deposit_non_stablecoin_keeps_exact_crypto_amount(fake, gateway):
    created = await gateway.create_deposit(request(1234, "BTC", "BTC"))
    assert fake.requests[-1].path.endswith("/cryptomus/direct/BTC/BTC/12.34")
    assert created.pay_amount == Decimal(fake.deposits[created.order_id]["amountInCrypto"])
    assert created.pay_currency == "BTC"


async def test_create_deposit_passes_a_coupon_code_through(fake, gateway):
    created = await gateway.create_deposit(request(coupon="SAVE10"))
    assert fake.requests[-1].json == {"apiKey": KEY, "couponCode": "SAVE10"}
    assert fake.deposits[created.order_id]["couponCode"] == "SAVE10"


# --- create_deposit: errors -----------------------------------------------------------------------------------------

async def test_wrong_api_key_is_misconfiguration_and_the_message_hides_the_key(fake):
    wrong_key = "wrong-key-0a7d3b"
    gw = SMSOnlineGateway(fake.base_url, USER, wrong_key, timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayMisconfigured) as info:
            await gw.create_deposit(request())
        with pytest.raises(GatewayMisconfigured) as info_fetch:
            await gw.fetch_payment("any-order")
    finally:
        await gw.close()
    for exc in (info.value, info_fetch.value):
        text = f"{exc} {exc.operator_detail} {exc!r}"
        assert wrong_key not in text
        assert "SMSONLINE_API_KEY" in exc.operator_detail  # tells the operator what to fix
    assert fake.deposits == {}


async def test_wrong_user_id_is_misconfiguration(fake):
    gw = SMSOnlineGateway(fake.base_url, "someone-else", KEY, timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayMisconfigured) as info:
            await gw.create_deposit(request())
    finally:
        await gw.close()
    assert KEY not in str(info.value)


async def test_refused_network_is_pair_unavailable(fake, gateway):
    fake.fail_next(DIRECT, status=400, body='{"ok": false, "errorMessage": "Non-acceptable Network"}',
                   content_type="application/json")
    with pytest.raises(PairUnavailable) as info:
        await gateway.create_deposit(request(coin="USDT", network="BSC"))
    assert "Non-acceptable Network" in info.value.operator_detail
    assert fake.deposits == {}


async def test_network_smsonline_does_not_serve_for_the_coin_is_pair_unavailable(gateway):
    # SMSOnline answers 400 "Non-acceptable Network" for a network it does not serve the coin on.
    with pytest.raises(PairUnavailable):
        await gateway.create_deposit(request(coin="USDT", network="XMR"))


async def test_500_with_a_coupon_is_coupon_rejected(fake, gateway):
    with pytest.raises(CouponRejected):
        await gateway.create_deposit(request(coupon="NOT-A-REAL-CODE"))
    assert fake.requests[-1].json == {"apiKey": KEY, "couponCode": "NOT-A-REAL-CODE"}
    assert fake.deposits == {}


async def test_500_without_a_coupon_is_unavailable_not_a_coupon_problem(fake, gateway):
    fake.fail_next(DIRECT, status=500, body='{"ok": false, "errorMessage": "Internal"}',
                   content_type="application/json")
    with pytest.raises(GatewayUnavailable) as info:
        await gateway.create_deposit(request())
    assert not isinstance(info.value, CouponRejected)


async def test_502_text_body_is_unavailable(fake, gateway):
    fake.fail_next(DIRECT, status=502, body="Bad Gateway", content_type="text/plain")
    with pytest.raises(GatewayUnavailable):
        await gateway.create_deposit(request())


async def test_429_is_unavailable(fake, gateway):
    fake.fail_next(DIRECT, status=429, body="slow down")
    with pytest.raises(GatewayUnavailable):
        await gateway.create_deposit(request())


async def test_timeout_is_unavailable(fake, gateway):
    fake.fail_next(DIRECT, status=None, delay=3.0)  # a hang, then (too late) a correct answer
    with pytest.raises(GatewayUnavailable) as info:
        await gateway.create_deposit(request())
    assert "timed out" in info.value.operator_detail
    # The gateway is still usable afterwards.
    created = await gateway.create_deposit(request())
    assert created.order_id == fake.last_order_id()


async def test_connection_refused_is_unavailable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = SMSOnlineGateway(f"http://127.0.0.1:{port}", USER, KEY, timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayUnavailable):
            await gw.create_deposit(request())
        with pytest.raises(GatewayUnavailable):
            await gw.fetch_payment("x")
    finally:
        await gw.close()


GARBAGE_BODIES = [
    "{not json",
    "<html>",
    "",
    "null",
    '["ok", true]',
    '{"ok": true}',
    '{"ok": "true", "body": {"to_address": "x", "order_id": "o", "amountInCrypto": "1"}}',
    '{"ok": true, "body": "https://pay.cryptomus.com/pay/abc"}',
    '{"ok": true, "body": {"to_address": null}}',
    '{"ok": true, "body": {"to_address": "x", "order_id": "o", "amountInCrypto": "-1"}}',
    '{"ok": true, "body": {"to_address": "x", "order_id": "o", "amountInCrypto": "0"}}',
    '{"ok": true, "body": {"to_address": "x", "order_id": "o", "amountInCrypto": "NaN"}}',
    '{"ok": true, "body": {"to_address": "x", "order_id": "o", "amountInCrypto": 4.99}}',
    '{"ok": true, "body": {"to_address": "", "order_id": "o", "amountInCrypto": "1"}}',
    '{"ok": true, "body": {"to_address": "x", "order_id": "  ", "amountInCrypto": "1"}}',
    '{"ok": true, "body": {"to_address": "x", "order_id": 17, "amountInCrypto": "1"}}',
    '{"ok": false}',
    '{"ok": false, "body": {"to_address": "x", "order_id": "o", "amountInCrypto": "1"}}',
]


@pytest.mark.parametrize("body", GARBAGE_BODIES)
async def test_unreadable_direct_wallet_answer_is_unavailable_never_a_deposit(fake, gateway, body):
    fake.fail_next(DIRECT, status=200, body=body, content_type="application/json")
    with pytest.raises(GatewayUnavailable):
        await gateway.create_deposit(request())


async def test_missing_expiry_falls_back_to_the_gateway_lifetime(fake, gateway):
    import time

    body = {"ok": True, "body": {"to_address": "0xabc", "order_id": "o-1", "amountInCrypto": "5.15",
                                 "currency": "USDT", "network": "bsc"}}
    fake.fail_next(DIRECT, status=200, body=json.dumps(body), content_type="application/json")
    before = int(time.time())
    created = await gateway.create_deposit(request())
    assert before + gateway.lifetime_seconds <= created.expires_at <= int(time.time()) + gateway.lifetime_seconds
    assert created.payment_url is None and created.quoted_cents is None


# --- fetch_payment --------------------------------------------------------------------------------------------------

async def test_fetch_payment_sends_documented_request(fake, gateway):
    created = await gateway.create_deposit(request())
    await gateway.fetch_payment(created.order_id)
    sent = fake.requests[-1]
    assert sent.method == "GET"
    assert sent.path == f"/v3/customers/{USER}/cryptomus/transaction/{created.order_id}"
    assert sent.query == {"apiKey": KEY}


async def test_fresh_deposit_is_pending(fake, gateway):
    order = await paid_order(fake, gateway, "check")
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.PENDING
    assert update.order_id == order and update.gateway == "smsonline"
    assert update.paid_cents is None


async def test_paid_carries_the_usd_received(fake, gateway):
    order = await paid_order(fake, gateway, "paid")
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.PAID
    assert update.paid_cents == 515
    assert update.raw_status == "paid"


async def test_paid_over_is_paid(fake, gateway):
    order = await paid_order(fake, gateway, "paid_over")
    assert (await gateway.fetch_payment(order)).state is PaymentState.PAID


async def test_status_in_payment_status_field_is_recognised(fake, gateway):
    fake.status_field = "payment_status"
    order = await paid_order(fake, gateway, "paid")
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.PAID
    assert update.paid_cents == 515


async def test_no_status_field_is_pending_never_credited_on_a_guess(fake, gateway):
    fake.status_field = None
    order = await paid_order(fake, gateway, "paid")  # the fake still sends is_final and payment_amount_usd
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.PENDING


async def test_paid_but_not_final_is_pending(fake, gateway):
    order = await paid_order(fake, gateway, "check")
    wallet = {k: v for k, v in fake.deposits[order].items() if k not in ("couponCode", "amount")}
    body = {"ok": True, "body": {**wallet, "status": "paid", "is_final": False, "payment_amount_usd": "5.15"}}
    fake.fail_next(TRANSACTION, status=200, body=json.dumps(body), content_type="application/json")
    assert (await gateway.fetch_payment(order)).state is PaymentState.PENDING


async def test_paid_without_is_final_field_is_paid(fake, gateway):
    fake.include_is_final = False
    order = await paid_order(fake, gateway, "paid")
    assert (await gateway.fetch_payment(order)).state is PaymentState.PAID


@pytest.mark.parametrize(("status", "state"), [
    ("cancel", PaymentState.CANCELLED),
    ("fail", PaymentState.FAILED),
    ("system_fail", PaymentState.FAILED),
    ("refund_paid", PaymentState.REFUNDED),
    ("locked", PaymentState.HELD),
    ("weird_status", PaymentState.PENDING),
    ("process", PaymentState.PENDING),
    ("confirm_check", PaymentState.PENDING),
])
async def test_status_mapping(fake, gateway, status, state):
    order = await paid_order(fake, gateway, status)
    update = await gateway.fetch_payment(order)
    assert update.state is state
    assert update.raw_status == status


async def test_wrong_amount_without_usd_received_is_held_not_credited(fake, gateway):
    order = await paid_order(fake, gateway, "wrong_amount")
    assert "payment_amount_usd" not in fake.deposits[order]  # the fake sends it only for paid statuses
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.HELD
    assert update.paid_cents is None


async def test_wrong_amount_with_usd_received_is_underpaid(fake, gateway):
    order = await paid_order(fake, gateway, "check")
    wallet = {k: v for k, v in fake.deposits[order].items() if k not in ("couponCode", "amount")}
    body = {"ok": True, "body": {**wallet, "status": "wrong_amount", "is_final": True, "payment_amount_usd": "3.10"}}
    fake.fail_next(TRANSACTION, status=200, body=json.dumps(body), content_type="application/json")
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.UNDERPAID
    assert update.paid_cents == 310


async def test_unknown_order_is_an_error_not_a_state(gateway):
    with pytest.raises(GatewayError):
        await gateway.fetch_payment("no-such-order")


@pytest.mark.parametrize("body", ["{not json", "<html>", '{"ok": false}', '{"ok": true, "body": "paid"}'])
async def test_unreadable_status_answer_is_unavailable(fake, gateway, body):
    order = await paid_order(fake, gateway, "paid")
    fake.fail_next(TRANSACTION, status=200, body=body, content_type="application/json")
    with pytest.raises(GatewayUnavailable):
        await gateway.fetch_payment(order)


async def test_status_5xx_and_timeout_are_unavailable(fake, gateway):
    order = await paid_order(fake, gateway, "paid")
    fake.fail_next(TRANSACTION, status=503, body="down")
    with pytest.raises(GatewayUnavailable):
        await gateway.fetch_payment(order)
    fake.fail_next(TRANSACTION, status=None, delay=3.0)
    with pytest.raises(GatewayUnavailable):
        await gateway.fetch_payment(order)
    assert (await gateway.fetch_payment(order)).state is PaymentState.PAID


# --- secrets ----------------------------------------------------------------------------------------------------

async def test_api_key_never_reaches_the_logs(fake, gateway, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, aiohttp and asyncio included
    created = await gateway.create_deposit(request(coupon="SAVE10"))
    fake.set_status(created.order_id, "weird_status")  # logged with its raw body the first time
    await gateway.fetch_payment(created.order_id)
    fake.set_status(created.order_id, "paid")
    await gateway.fetch_payment(created.order_id)
    fake.fail_next(TRANSACTION, status=500, body="oops")
    with pytest.raises(GatewayUnavailable):
        await gateway.fetch_payment(created.order_id)

    wrong = SMSOnlineGateway(fake.base_url, USER, "wrong-key-93be", timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayMisconfigured):
            await wrong.create_deposit(request())
        with pytest.raises(GatewayMisconfigured):
            await wrong.fetch_payment(created.order_id)
    finally:
        await wrong.close()

    assert "smsonline" in caplog.text  # the raw answers were logged, so the check below means something
    assert created.order_id in caplog.text
    assert KEY not in caplog.text
    assert "wrong-key-93be" not in caplog.text
