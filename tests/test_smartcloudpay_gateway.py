"""SmartCloudPayGateway against FakeSmartCloudPay, over real HTTP on 127.0.0.1.

Contract: shared/reference/payment-apis.md section 3 (current revision of the Smart CloudPay docs). Its responses are
undocumented, so the fake's knobs (create_shape, status_field) vary the shapes the gateway must cope with.
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.gateways.base import (
    DepositRequest,
    GatewayMisconfigured,
    GatewayUnavailable,
    PairUnavailable,
    PaymentState,
    WebhookVerdict,
)
from services.gateways.smartcloudpay import SmartCloudPayGateway
from tests.fakes.smartcloudpay import FakeSmartCloudPay

KEY = "sk_test_scp_9d41e7b3"  # distinctive, so a leak into a message is unambiguous
MERCHANT = "merchant-scp-7"
EMAIL = "ops@example.com"
CALLBACK = "https://bot.example.com/webhooks/smartcloudpay?token=tok-abcdefghijklmnop"
CREATE = "/payment/invoice/create"


@pytest.fixture
async def fake():
    async with FakeSmartCloudPay(api_key=KEY, merchant_id=MERCHANT) as server:
        yield server


@pytest.fixture
async def gateway(fake):
    # 2 s: room for a loaded machine to answer a local request (0.5 s once timed out a connect under CI); the hanging
    # gateway's test below still waits longer than this (3 s) for its answer.
    gw = SmartCloudPayGateway(fake.base_url, KEY, MERCHANT, notification_email=EMAIL, callback_url=CALLBACK,
                              timeout_seconds=2.0)
    yield gw
    await gw.close()


def request(amount_cents: int = 2500, coin: str = "USDT", network: str = "BSC",
            user_id: int = 42) -> DepositRequest:
    return DepositRequest(deposit_id=7, user_id=user_id, coin=coin, network=network, amount_cents=amount_cents)


async def created_invoice(fake: FakeSmartCloudPay, gateway: SmartCloudPayGateway) -> str:
    created = await gateway.create_deposit(request())
    return created.order_id


# --- create_deposit ---------------------------------------------------------------------------------------------

async def test_create_sends_the_documented_request(fake, gateway):
    await gateway.create_deposit(request(2500, "USDT", "BSC", user_id=42))
    [sent] = fake.requests_to(CREATE)
    assert sent.method == "POST"
    assert sent.headers.get("x-api-key") == KEY
    assert sent.headers.get("merchant-id") == MERCHANT
    # totalusd is a JSON number written from the Decimal's digits: exactly the cents, never a float artefact.
    assert '"totalusd": 25.00' in sent.text
    assert isinstance(sent.json["totalusd"], float) and sent.json["totalusd"] == 25.0
    assert sent.json["currency"] == "USDT"
    assert sent.json["network"] == "bsc"
    assert sent.json["customer_name"] and "42" in sent.json["customer_name"]
    assert sent.json["notification_emails"] == EMAIL
    assert sent.json["callback_url"] == CALLBACK


@pytest.mark.parametrize(("cents", "text"), [(515, "5.15"), (1, "0.01"), (1_000_000, "10000.00"), (1990, "19.90")])
async def test_totalusd_carries_exactly_the_cents(fake, gateway, cents, text):
    await gateway.create_deposit(request(cents))
    [sent] = fake.requests_to(CREATE)
    assert f'"totalusd": {text},' in sent.text
    assert fake.invoice(fake.last_invoice_id())["totalusd"] == text


async def test_tron_is_sent_lower_case(fake, gateway):
    created = await gateway.create_deposit(request(1000, "USDT", "TRON"))
    [sent] = fake.requests_to(CREATE)
    assert sent.json["network"] == "tron"
    assert created.address.startswith("T")
    assert fake.invoice(created.order_id)["network"] == "tron"


async def test_create_returns_the_invoice_address_and_amount(fake, gateway):
    created = await gateway.create_deposit(request(2500))
    invoice = fake.invoice(fake.last_invoice_id())
    assert created.order_id == invoice["invoice_id"]
    assert created.address == invoice["address"]
    assert created.pay_amount == Decimal(invoice["amount"]) == Decimal("25.00")
    assert created.pay_currency == "USDT"
    assert created.expires_at == invoice["expires_at"]
    assert created.payment_url == invoice["payment_url"]
    assert created.quoted_cents == 2500


async def test_bnb_invoice_amount_is_in_coin_units(fake, gateway):
    created = await gateway.create_deposit(request(6000, "BNB", "BSC"))
    assert created.pay_currency == "BNB"
    assert created.pay_amount == Decimal("0.1")  # $60 at the fake's 600 USD/BNB
    assert created.address.startswith("0x")


async def test_flat_shape_with_id_instead_of_invoice_id_works(fake, gateway):
    fake.create_shape = "flat"
    created = await gateway.create_deposit(request(2500))
    invoice = fake.invoice(fake.last_invoice_id())
    assert created.order_id == invoice["invoice_id"]
    assert created.address == invoice["address"]
    assert created.pay_amount == Decimal("25.00")


async def test_an_invoice_without_an_address_is_never_shown(fake, gateway):
    fake.create_shape = "no_address"
    with pytest.raises(GatewayUnavailable) as caught:
        await gateway.create_deposit(request())
    assert "incomplete" in caught.value.operator_detail
    assert KEY not in str(caught.value)


async def test_wrong_key_is_misconfiguration_and_the_key_is_not_in_the_message(fake):
    gw = SmartCloudPayGateway(fake.base_url, "sk_wrong_key_31337", MERCHANT, notification_email=EMAIL,
                              callback_url=None, timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayMisconfigured) as caught:
            await gw.create_deposit(request())
    finally:
        await gw.close()
    assert "401" in caught.value.operator_detail
    assert "sk_wrong_key_31337" not in str(caught.value)
    assert KEY not in str(caught.value)
    assert gw.health.last_error is not None and "sk_wrong_key_31337" not in gw.health.last_error
    assert fake.invoices == {}


async def test_wrong_merchant_is_misconfiguration(fake):
    gw = SmartCloudPayGateway(fake.base_url, KEY, "someone-else", notification_email=EMAIL, callback_url=None,
                              timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayMisconfigured):
            await gw.create_deposit(request())
    finally:
        await gw.close()
    assert KEY not in str(gw.health.last_error)


async def test_unsupported_pair_is_pair_unavailable(fake, gateway):
    fake.pairs.discard(("BNB", "bsc"))
    with pytest.raises(PairUnavailable) as caught:
        await gateway.create_deposit(request(2500, "BNB", "BSC"))
    assert "Unsupported" in caught.value.operator_detail
    assert fake.invoices == {}


@pytest.mark.parametrize("status", [500, 502, 503])
async def test_server_errors_are_temporary(fake, gateway, status):
    fake.fail_next(CREATE, status=status)
    with pytest.raises(GatewayUnavailable):
        await gateway.create_deposit(request())
    assert gateway.health.last_error is not None and str(status) in gateway.health.last_error
    created = await gateway.create_deposit(request())  # the next try goes through
    assert created.order_id == fake.last_invoice_id()


async def test_a_hanging_gateway_is_temporary(fake, gateway):
    fake.fail_next(CREATE, status=None, delay=3.0)
    with pytest.raises(GatewayUnavailable) as caught:
        await gateway.create_deposit(request())
    assert "timed out" in caught.value.operator_detail


async def test_an_unreadable_answer_is_temporary(fake, gateway):
    fake.fail_next(CREATE, status=200, body="<html>maintenance</html>", content_type="text/html")
    with pytest.raises(GatewayUnavailable):
        await gateway.create_deposit(request())


async def test_a_closed_port_is_temporary(fake):
    base = fake.base_url
    await fake.stop()
    gw = SmartCloudPayGateway(base, KEY, MERCHANT, notification_email=EMAIL, callback_url=None, timeout_seconds=0.5)
    try:
        with pytest.raises(GatewayUnavailable):
            await gw.create_deposit(request())
    finally:
        await gw.close()


# --- fetch_payment ----------------------------------------------------------------------------------------------

async def test_pending_invoice_is_pending(fake, gateway):
    order = await created_invoice(fake, gateway)
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.PENDING
    assert update.order_id == order and update.gateway == "smartcloudpay"
    [get] = fake.requests_to(f"/api/invoice/{order}")
    assert get.method == "GET"
    assert get.headers.get("x-api-key") == KEY and get.headers.get("merchant-id") == MERCHANT


async def test_paid_in_full_is_paid(fake, gateway):
    order = await created_invoice(fake, gateway)
    fake.set_status(order, "paid", tx_hash="0xfeed")
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.PAID
    assert update.txid == "0xfeed"
    assert update.raw_status == "paid"


async def test_paid_with_more_than_asked_is_paid(fake, gateway):
    order = await created_invoice(fake, gateway)
    fake.set_status(order, "paid", received_amount="25.01")
    assert (await gateway.fetch_payment(order)).state is PaymentState.PAID


@pytest.mark.parametrize("received", ["24.99", "0", "10.00"])
async def test_paid_with_less_than_asked_is_held_for_review(fake, gateway, received):
    order = await created_invoice(fake, gateway)
    fake.set_status(order, "paid", received_amount=received)
    update = await gateway.fetch_payment(order)
    assert update.state is PaymentState.HELD


@pytest.mark.parametrize("status", ["cancelled", "expired", "CANCELLED"])
async def test_cancelled_invoice_is_cancelled(fake, gateway, status):
    order = await created_invoice(fake, gateway)
    fake.set_status(order, status)
    assert (await gateway.fetch_payment(order)).state is PaymentState.CANCELLED


@pytest.mark.parametrize("status", ["confirming", "partially_paid", "refunded?", ""])
async def test_unknown_statuses_are_pending(fake, gateway, status):
    order = await created_invoice(fake, gateway)
    fake.set_status(order, status)
    assert (await gateway.fetch_payment(order)).state is PaymentState.PENDING


async def test_status_under_payment_status_is_read(fake, gateway):
    order = await created_invoice(fake, gateway)
    fake.status_field = "payment_status"
    fake.set_status(order, "paid")
    assert (await gateway.fetch_payment(order)).state is PaymentState.PAID
    fake.set_status(order, "cancelled")
    assert (await gateway.fetch_payment(order)).state is PaymentState.CANCELLED


async def test_missing_status_is_pending(fake, gateway):
    order = await created_invoice(fake, gateway)
    fake.status_field = None
    fake.set_status(order, "paid")  # the API would say paid, but the answer doesn't name a status field
    assert (await gateway.fetch_payment(order)).state is PaymentState.PENDING


async def test_fetch_failures_are_temporary(fake, gateway):
    order = await created_invoice(fake, gateway)
    fake.fail_next(f"/api/invoice/{order}", status=502)
    with pytest.raises(GatewayUnavailable):
        await gateway.fetch_payment(order)
    with pytest.raises(GatewayUnavailable):
        await gateway.fetch_payment("INV-does-not-exist")  # 404 with an error envelope
    assert (await gateway.fetch_payment(order)).state is PaymentState.PENDING


async def test_invoice_id_is_escaped_into_the_path(fake, gateway):
    with pytest.raises(GatewayUnavailable):  # the fake's "invoice not found", not the wallets list
        await gateway.fetch_payment("../payout/wallets")
    [sent] = fake.requests
    assert sent.path.startswith("/api/invoice/")  # one path segment: not resolved to /api/payout/wallets


# --- cancel_deposit ---------------------------------------------------------------------------------------------

async def test_cancel_calls_the_cancel_endpoint(fake, gateway):
    order = await created_invoice(fake, gateway)
    await gateway.cancel_deposit(order)
    [sent] = fake.requests_to(f"/api/payment/invoice/cancel/{order}")
    assert sent.method == "POST"
    assert sent.headers.get("x-api-key") == KEY
    assert fake.invoice(order)["status"] == "cancelled"
    assert (await gateway.fetch_payment(order)).state is PaymentState.CANCELLED


async def test_cancelling_a_paid_invoice_is_refused(fake, gateway):
    order = await created_invoice(fake, gateway)
    fake.set_status(order, "paid")
    with pytest.raises(GatewayUnavailable):
        await gateway.cancel_deposit(order)
    assert fake.invoice(order)["status"] == "paid"


# --- read_webhook -----------------------------------------------------------------------------------------------

def reader() -> SmartCloudPayGateway:
    return SmartCloudPayGateway("http://127.0.0.1:9/api", KEY, MERCHANT, notification_email=EMAIL, callback_url=None)


async def test_unsigned_paid_webhook_only_asks_for_a_refetch(fake, gateway):
    order = await created_invoice(fake, gateway)
    body = json.dumps(fake.webhook_body(order, status="paid")).encode()
    reading = gateway.read_webhook(body)
    assert reading.verdict is WebhookVerdict.REFETCH
    assert reading.order_id == order
    assert reading.update is None  # never a payment taken from the body


def test_numeric_invoice_id_is_read_as_text():
    reading = reader().read_webhook(b'{"status": "paid", "invoice_id": 88219}')
    assert reading.verdict is WebhookVerdict.REFETCH and reading.order_id == "88219"


@pytest.mark.parametrize("body", [b"", b"not json", b"{", b"\xff\xfe\x00garbage", b"[" * 100_000])
def test_non_json_is_a_bad_request(body):
    assert reader().read_webhook(body).verdict is WebhookVerdict.BAD_REQUEST


@pytest.mark.parametrize("body", [
    {"status": "paid", "amount": "100.00"},
    {"status": "paid", "invoice_id": None},
    {"status": "paid", "invoice_id": ""},
    {"status": "paid", "invoice_id": "   "},
    {"status": "paid", "invoice_id": True},
    {"status": "paid", "invoice_id": 1.5},
    {"status": "paid", "invoice_id": ["INV-1"]},
    {"status": "paid", "invoice_id": {"id": "INV-1"}},
])
def test_missing_or_malformed_invoice_id_is_a_bad_request(body):
    assert reader().read_webhook(json.dumps(body).encode()).verdict is WebhookVerdict.BAD_REQUEST


@pytest.mark.parametrize("body", [b'["INV-1"]', b'"INV-1"', b"42", b"null"])
def test_json_that_is_not_an_object_is_a_bad_request(body):
    assert reader().read_webhook(body).verdict is WebhookVerdict.BAD_REQUEST


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.binary(max_size=512))
def test_random_bytes_never_raise_and_never_settle(body):
    reading = reader().read_webhook(body)
    assert reading.verdict in (WebhookVerdict.REFETCH, WebhookVerdict.BAD_REQUEST)
    assert reading.update is None


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(st.dictionaries(st.sampled_from(["invoice_id", "status", "amount", "received_amount", "tx_hash", "x"]),
                       _json_values, max_size=6))
def test_random_json_objects_never_raise_and_never_settle(body):
    reading = reader().read_webhook(json.dumps(body).encode())
    assert reading.verdict in (WebhookVerdict.REFETCH, WebhookVerdict.BAD_REQUEST)
    assert reading.update is None
    if reading.verdict is WebhookVerdict.REFETCH:
        assert reading.order_id and reading.order_id == reading.order_id.strip()
