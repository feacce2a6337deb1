"""Smart CloudPay callbacks through the real aiohttp listener, on a real SQLite file, against FakeSmartCloudPay.

The webhook is unsigned (payment-apis.md 3.4/3.5), so it must only ever be a hint: the listener checks the secret
token in the URL, ignores invoices we didn't create, re-reads the invoice from the API, and credits only on what the
API says. Every assertion is on what a user or operator would see: balance, ledger, deposit status, notifications,
the HTTP answer the gateway gets, and the audit rows in `callbacks`.
"""
from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from bot.web import build_web_app
from services.gateways.smartcloudpay import SmartCloudPayGateway
from services.matrix import Matrix
from services.money import AmountLimits
from services.settlement import Settler
from services.store import Database, Deposit, DepositStatus
from services.store import deposits, users
from services.store.callbacks import refusals
from services.store.db import fetch_all
from services.topup import TopupService
from services.webhooks import CallbackInbox, CallbackPolicy
from tests.fakes.smartcloudpay import FakeSmartCloudPay

KEY = "sk_listener_key_5e1a"
MERCHANT = "merchant-listen-3"
TOKEN = "cb-token-Zq8vN3xL0pRt7YwK2mHs"
ADMIN = -1009988
ALICE = 7001
GET_INVOICE = "/api/invoice/"


@dataclass
class Stack:
    db: Database
    fake: FakeSmartCloudPay
    gateway: SmartCloudPayGateway
    topup: TopupService
    listener: str  # http://127.0.0.1:PORT

    @property
    def callback_url(self) -> str:
        return f"{self.listener}/webhooks/smartcloudpay?token={TOKEN}"

    def api_lookups(self) -> int:
        return len([r for r in self.fake.requests_to(GET_INVOICE) if r.method == "GET"])

    async def deposit(self, amount_cents: int = 2500) -> Deposit:
        return await self.topup.create_deposit(user_id=ALICE, chat_id=ALICE, coin="USDT", network="BSC",
                                               amount_cents=amount_cents, coupon_code=None)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSmartCloudPay]:
    async with FakeSmartCloudPay(api_key=KEY, merchant_id=MERCHANT) as server:
        yield server


@pytest.fixture
async def stack(db: Database, fake: FakeSmartCloudPay) -> AsyncIterator[Stack]:
    async with db.transaction() as tx:
        await users.upsert(tx, ALICE, "alice", "Alice", "en")
    # Bind first, so the callback URL handed to the gateway names the port the listener really serves.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    listener = f"http://127.0.0.1:{sock.getsockname()[1]}"
    settler = Settler(db, admin_chat_id=ADMIN)
    gateway = SmartCloudPayGateway(fake.base_url, KEY, MERCHANT, notification_email="ops@example.com",
                                   callback_url=f"{listener}/webhooks/smartcloudpay?token={TOKEN}",
                                   timeout_seconds=2)
    topup = TopupService(db, gateway, Matrix(gateway.pairs), settler, AmountLimits(100, 1_000_000),
                         admin_chat_id=ADMIN)
    inbox = CallbackInbox(db, gateway, settler, admin_chat_id=ADMIN,
                          policies={"smartcloudpay": CallbackPolicy(token=TOKEN)})
    runner = web.AppRunner(build_web_app(db, gateway, inbox), access_log=None)
    try:
        await runner.setup()
        await web.SockSite(runner, sock).start()
        yield Stack(db, fake, gateway, topup, listener)
    finally:
        await runner.cleanup()
        await gateway.close()
        sock.close()


async def post(url: str, body: bytes | str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            url, data=body, headers={"Content-Type": "application/json"}) as resp:
        return resp.status, await resp.text()


async def balance(db: Database) -> int:
    user = await users.get(db.reader, ALICE)
    assert user is not None
    return user.balance_cents


async def ledger(db: Database) -> list[tuple[str, int, int]]:
    rows = await fetch_all(db.reader, "SELECT kind, amount_cents, deposit_id FROM ledger ORDER BY id")
    return [(r["kind"], r["amount_cents"], r["deposit_id"]) for r in rows]


async def notifications(db: Database, kind: str) -> list[dict]:
    rows = await fetch_all(db.reader, "SELECT chat_id, deposit_id, payload FROM notifications WHERE kind = ? "
                                      "ORDER BY id", (kind,))
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def callback_rows(db: Database) -> list[dict]:
    rows = await fetch_all(db.reader, "SELECT source, body, verdict, http_status, order_id FROM callbacks ORDER BY id")
    return [dict(r) for r in rows]


async def status_of(db: Database, deposit_id: int) -> DepositStatus:
    found = await deposits.get(db.reader, deposit_id)
    assert found is not None
    return found.status


# --- the gateway is told where to call back ---------------------------------------------------------------------

async def test_the_invoice_carries_the_tokened_callback_url(stack: Stack):
    dep = await stack.deposit()
    invoice = stack.fake.invoice(dep.order_id)
    assert invoice["callback_url"] == stack.callback_url
    assert dep.address == invoice["address"] and dep.status is DepositStatus.PENDING


# --- the key test: a webhook is a hint, never a payment ---------------------------------------------------------

async def test_a_paid_webhook_for_an_invoice_the_api_calls_pending_credits_nothing(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    assert stack.fake.invoice(inv)["status"] == "pending"
    status, _ = await stack.fake.send_webhook(stack.fake.invoice(inv)["callback_url"], inv, status="paid",
                                              received_amount="25.00")
    assert status == 200
    assert await balance(stack.db) == 0
    assert await ledger(stack.db) == []
    assert await status_of(stack.db, dep.id) is DepositStatus.PENDING
    assert await notifications(stack.db, "deposit_paid") == []
    assert await notifications(stack.db, "admin_deposit_paid") == []
    assert stack.api_lookups() == 1  # the hint was checked against the API
    [row] = await callback_rows(stack.db)
    assert row["verdict"] == "unchanged" and row["order_id"] == inv and row["http_status"] == 200


async def test_once_the_api_says_paid_a_webhook_credits_exactly_once(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    stack.fake.set_status(inv, "paid", tx_hash="0xabc123")
    for _ in range(3):  # the gateway retries; each is answered 200 and none credits again
        status, _ = await stack.fake.send_webhook(stack.callback_url, inv)
        assert status == 200
    assert await balance(stack.db) == 2500
    assert await ledger(stack.db) == [("deposit", 2500, dep.id)]
    assert await status_of(stack.db, dep.id) is DepositStatus.PAID
    [paid] = await notifications(stack.db, "deposit_paid")
    assert paid["chat_id"] == ALICE and paid["payload"]["credited_cents"] == 2500
    [admin] = await notifications(stack.db, "admin_deposit_paid")
    assert admin["chat_id"] == ADMIN and admin["payload"]["txid"] == "0xabc123"
    assert [r["verdict"] for r in await callback_rows(stack.db)] == ["credited", "already_credited",
                                                                      "already_credited"]


async def test_the_webhook_body_cannot_inflate_the_credit(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    stack.fake.set_status(inv, "paid")
    status, _ = await stack.fake.send_webhook(stack.callback_url, inv, received_amount="9999.00",
                                              amount="9999.00")
    assert status == 200
    assert await balance(stack.db) == 2500


# --- strangers can't even make us look ------------------------------------------------------------------------

@pytest.mark.parametrize("query", ["", "?token=", "?token=wrong-token-000000000000", f"?token={TOKEN}x",
                                   f"?tok={TOKEN}"])
async def test_a_webhook_without_the_right_token_is_refused_and_makes_no_api_call(stack: Stack, query: str):
    dep = await stack.deposit()
    inv = dep.order_id
    stack.fake.set_status(inv, "paid")  # even a true claim is not acted on without the token
    url = f"{stack.listener}/webhooks/smartcloudpay{query}"
    status, _ = await stack.fake.send_webhook(url, inv)
    assert status == 403
    assert stack.api_lookups() == 0
    assert await balance(stack.db) == 0
    assert await status_of(stack.db, dep.id) is DepositStatus.PENDING
    assert await callback_rows(stack.db) == []  # refused before anything is stored
    [row] = await refusals(stack.db.reader)
    assert (row["reason"], row["refused"]) == ("bad_token", 1)
    [alert] = await notifications(stack.db, "admin_webhook_rejected")
    assert alert["chat_id"] == ADMIN and alert["payload"]["reason"] == "bad_token"


async def test_a_webhook_for_an_invoice_we_never_created_makes_no_api_call(stack: Stack):
    dep = await stack.deposit()
    stack.fake.set_status(dep.order_id, "paid")
    body = {"status": "paid", "invoice_id": "INV-99999", "amount": "25.00", "currency": "USDT",
            "tx_hash": "0xdead", "received_amount": "25.00"}
    status, _ = await stack.fake.send_webhook(stack.callback_url, "INV-99999", body=body)
    assert status == 200  # nothing to retry
    assert stack.api_lookups() == 0
    assert await balance(stack.db) == 0
    assert await ledger(stack.db) == []
    [row] = await callback_rows(stack.db)
    assert row["verdict"] == "unknown_order" and row["order_id"] == "INV-99999"


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"status": "paid"}', b'{"invoice_id": ""}'])
async def test_a_malformed_webhook_is_a_bad_request_and_credits_nothing(stack: Stack, body: bytes):
    dep = await stack.deposit()
    stack.fake.set_status(dep.order_id, "paid")
    status, _ = await post(stack.callback_url, body)
    assert status == 400
    assert stack.api_lookups() == 0
    assert await balance(stack.db) == 0


# --- the API failing on the re-read -----------------------------------------------------------------------------

async def test_when_the_api_lookup_fails_the_gateway_is_asked_to_retry_and_the_retry_credits(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    stack.fake.set_status(inv, "paid")
    stack.fake.fail_next(f"{GET_INVOICE}{inv}", status=502, method="GET")
    status, _ = await stack.fake.send_webhook(stack.callback_url, inv)
    assert status == 503
    assert await balance(stack.db) == 0
    assert await status_of(stack.db, dep.id) is DepositStatus.PENDING
    status, _ = await stack.fake.send_webhook(stack.callback_url, inv)
    assert status == 200
    assert await balance(stack.db) == 2500
    assert await ledger(stack.db) == [("deposit", 2500, dep.id)]
    assert [(r["verdict"], r["http_status"]) for r in await callback_rows(stack.db)] == [
        ("refetch_failed", 503), ("credited", 200)]


async def test_when_the_api_hangs_the_gateway_is_asked_to_retry(stack: Stack):
    dep = await stack.deposit()
    stack.fake.set_status(dep.order_id, "paid")
    stack.fake.fail_next(f"{GET_INVOICE}{dep.order_id}", status=None, delay=5.0, method="GET")
    status, _ = await stack.fake.send_webhook(stack.callback_url, dep.order_id)
    assert status == 503
    assert await balance(stack.db) == 0


# --- concurrency ------------------------------------------------------------------------------------------------

async def test_thirty_concurrent_paid_webhooks_credit_once(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    stack.fake.set_status(inv, "paid")
    results = await asyncio.gather(*(stack.fake.send_webhook(stack.callback_url, inv) for _ in range(30)))
    assert [status for status, _ in results] == [200] * 30
    assert await balance(stack.db) == 2500
    assert await ledger(stack.db) == [("deposit", 2500, dep.id)]
    assert len(await notifications(stack.db, "deposit_paid")) == 1
    assert len(await notifications(stack.db, "admin_deposit_paid")) == 1
    verdicts = [r["verdict"] for r in await callback_rows(stack.db)]
    assert sorted(verdicts) == ["already_credited"] * 29 + ["credited"]


# --- amounts that need a person ---------------------------------------------------------------------------------

async def test_a_short_payment_credits_nothing_and_asks_the_operator_to_review(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    stack.fake.set_status(inv, "paid", received_amount="20.00")
    status, _ = await stack.fake.send_webhook(stack.callback_url, inv)
    assert status == 200
    assert await balance(stack.db) == 0
    assert await ledger(stack.db) == []
    assert await notifications(stack.db, "deposit_paid") == []
    [review] = await notifications(stack.db, "admin_deposit_review")
    assert review["chat_id"] == ADMIN and review["deposit_id"] == dep.id
    # A repeat of the same report does not nag the operator twice.
    await stack.fake.send_webhook(stack.callback_url, inv)
    assert len(await notifications(stack.db, "admin_deposit_review")) == 1
    # The rest arrives: now it is paid in full and credited.
    stack.fake.set_status(inv, "paid", received_amount="25.00")
    await stack.fake.send_webhook(stack.callback_url, inv)
    assert await balance(stack.db) == 2500


async def test_the_review_notice_for_a_short_payment_says_what_is_wrong(stack: Stack):
    dep = await stack.deposit()
    stack.fake.set_status(dep.order_id, "paid", received_amount="20.00")
    await stack.fake.send_webhook(stack.callback_url, dep.order_id)
    [review] = await notifications(stack.db, "admin_deposit_review")
    reason = review["payload"]["reason"]
    assert reason != "paid" and "20" in reason


async def test_an_overpayment_is_brought_to_the_operator(stack: Stack):
    dep = await stack.deposit()
    stack.fake.set_status(dep.order_id, "paid", received_amount="100.00")
    status, _ = await stack.fake.send_webhook(stack.callback_url, dep.order_id)
    assert status == 200
    reviews = await notifications(stack.db, "admin_deposit_review")
    flagged_paid = [n for n in await notifications(stack.db, "admin_deposit_paid") if n["payload"].get("review")]
    assert reviews or flagged_paid
    assert "100.00" in (flagged_paid[0]["payload"]["note"] if flagged_paid else reviews[0]["payload"]["reason"])
    assert await balance(stack.db) == 2500  # the invoice amount; the excess is for a person to handle


# --- the audit trail --------------------------------------------------------------------------------------------

async def test_every_raw_body_that_passed_the_checks_is_kept_and_the_rest_counted(stack: Stack):
    dep = await stack.deposit()
    inv = dep.order_id
    no_token = f"{stack.listener}/webhooks/smartcloudpay"
    pending_hint = json.dumps(stack.fake.webhook_body(inv)).encode()
    garbage = b"\x00\xffnot json at all"
    unknown = b'{"status": "paid", "invoice_id": "INV-4242"}'
    sent = [
        (stack.callback_url, pending_hint, 200, "unchanged"),
        (no_token, pending_hint, 403, "bad_token"),
        (stack.callback_url, garbage, 400, "bad_request"),
        (stack.callback_url, unknown, 200, "unknown_order"),
    ]
    for url, body, expected, _ in sent:
        status, _ = await post(url, body)
        assert status == expected
    stack.fake.set_status(inv, "paid")
    paid_hint = json.dumps(stack.fake.webhook_body(inv)).encode()
    status, _ = await post(stack.callback_url, paid_hint)
    assert status == 200
    sent.append((stack.callback_url, paid_hint, 200, "credited"))
    rows = await callback_rows(stack.db)
    kept = [entry for entry in sent if entry[2] == 200]
    assert [bytes(r["body"]) for r in rows] == [body for _, body, _, _ in kept]
    assert [(r["http_status"], r["verdict"]) for r in rows] == [(s, v) for _, _, s, v in kept]
    assert {(r["reason"], r["refused"]) for r in await refusals(stack.db.reader)} == {("bad_token", 1),
                                                                                     ("bad_request", 1)}
    assert {r["source"] for r in rows} == {"smartcloudpay"}
    assert await balance(stack.db) == 2500


async def test_the_token_is_not_kept_in_the_callbacks_table(stack: Stack):
    dep = await stack.deposit()
    await stack.fake.send_webhook(stack.callback_url, dep.order_id)
    rows = await fetch_all(stack.db.reader, "SELECT * FROM callbacks")
    assert rows and all(TOKEN not in json.dumps({k: str(r[k]) for k in r.keys()}) for r in rows)



@pytest.mark.parametrize(("field", "value"), [
    ("amount", "250.00"),     # the invoice now asks another coin amount than the one the user was shown
    ("totalusd", "250.00"),   # its USD value is not the deposit's
    ("currency", "BNB"),      # another coin
])
async def test_an_invoice_whose_figures_changed_is_held_not_credited(stack: Stack, field: str, value: str):
    dep = await stack.deposit()
    stack.fake.set_status(dep.order_id, "paid")
    stack.fake.invoice(dep.order_id)[field] = value
    stack.fake.invoice(dep.order_id)["received_amount"] = stack.fake.invoice(dep.order_id)["amount"]
    status, _ = await stack.fake.send_webhook(stack.callback_url, dep.order_id)
    assert status == 200
    assert await balance(stack.db) == 0 and await ledger(stack.db) == []
    [review] = await notifications(stack.db, "admin_deposit_review")
    assert review["deposit_id"] == dep.id
