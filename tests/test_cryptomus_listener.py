"""The real HTTP listener (bot/web.py + services/webhooks.py) taking Cryptomus callbacks from FakeCryptomus.

Everything is real: the SQLite file, the Cryptomus client talking HTTP to the fake, the aiohttp listener on
127.0.0.1, and the webhooks the fake signs and POSTs. Assertions are on what a user or operator would see:
the HTTP answer Cryptomus gets, the balance, the ledger, the deposit, the stored callback and the queued
notifications.
"""
from __future__ import annotations

import asyncio
import json
import random
import socket
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal

import aiohttp
import pytest
from aiohttp import web

from bot.web import build_web_app
from services.alerts import ALERT_WINDOW_SECONDS
from services.gateways.cryptomus import CryptomusGateway
from services.matrix import Matrix
from services.money import AmountLimits
from services.reconciler import Reconciler
from services.gateways.base import PaymentState, PaymentUpdate
from services.settlement import Outcome, Settler
from services.store import CouponKind, Database, Deposit, DepositStatus, now_ts
from services.store.db import fetch_value
from services.store import coupons as coupon_repo
from services.store import deposits, users
from services.store import callbacks as callbacks_repo
from services.store.db import fetch_all
from services.topup import TopupService
from services.webhooks import CallbackInbox, CallbackPolicy, parse_networks
from tests.fakes.cryptomus import FakeCryptomus, cryptomus_sign, php_json

MERCHANT = "9a7c-merchant-uuid"
KEY = "listener-payment-key-5e4d"
ADMIN = -100
ALICE = 501
CRYPTOMUS_IP = "91.227.144.54"
ALLOWED = {200, 400, 401, 403, 404, 413}


@dataclass
class Listener:
    db: Database
    fake: FakeCryptomus
    gateway: CryptomusGateway
    settler: Settler
    topup: TopupService
    reconciler: Reconciler
    base: str
    session: aiohttp.ClientSession
    inbox: CallbackInbox

    @property
    def webhook_url(self) -> str:
        return f"{self.base}/webhooks/cryptomus"

    async def post(self, path: str, body: bytes | object, *, headers: dict[str, str] | None = None,
                   method: str = "POST") -> tuple[int, str]:
        async with self.session.request(method, f"{self.base}{path}", data=body, headers=headers) as response:
            return response.status, await response.text()

    async def send(self, order_id: str, **kw) -> int:
        status, _ = await self.fake.send_webhook(self.webhook_url, order_id, **kw)
        return status


ListenerFactory = Callable[..., Awaitable[Listener]]


@pytest.fixture
async def fake() -> AsyncIterator[FakeCryptomus]:
    async with FakeCryptomus(merchant_id=MERCHANT, payment_key=KEY) as server:
        yield server


@pytest.fixture
async def make_listener(db: Database, fake: FakeCryptomus) -> AsyncIterator[ListenerFactory]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def make(*, trusted_proxies: str = "", allowed_sources: str | None = None) -> Listener:
        async with db.transaction() as tx:
            await users.upsert(tx, ALICE, "alice", "Alice", "en")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        gateway = CryptomusGateway(fake.base_url, MERCHANT, KEY, callback_url=f"{base}/webhooks/cryptomus",
                                   timeout_seconds=5)
        settler = Settler(db, admin_chat_id=ADMIN)
        topup = TopupService(db, gateway, Matrix(gateway.pairs), settler, AmountLimits(100, 1_000_000),
                             admin_chat_id=ADMIN)
        reconciler = Reconciler(db, gateway, settler, interval_seconds=30, admin_chat_id=ADMIN)
        policy = CallbackPolicy(allowed_sources=parse_networks(allowed_sources) if allowed_sources else None)
        inbox = CallbackInbox(db, gateway, settler, admin_chat_id=ADMIN,
                              trusted_proxies=parse_networks(trusted_proxies),
                              policies={"cryptomus": policy})
        runner = web.AppRunner(build_web_app(db, gateway, inbox), access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))

        async def cleanup() -> None:
            await session.close()
            await runner.cleanup()
            await gateway.close()

        cleanups.append(cleanup)
        return Listener(db, fake, gateway, settler, topup, reconciler, base, session, inbox)

    yield make
    for cleanup in reversed(cleanups):
        await cleanup()


@pytest.fixture
async def listener(make_listener: ListenerFactory) -> Listener:
    return await make_listener()


async def create(lst: Listener, amount_cents: int = 2500) -> Deposit:
    return await lst.topup.create_deposit(user_id=ALICE, chat_id=ALICE, coin="USDT", network="TRON",
                                          amount_cents=amount_cents, coupon_code=None)


async def balance(db: Database) -> int:
    user = await users.get(db.reader, ALICE)
    assert user is not None
    return user.balance_cents


async def ledger_rows(db: Database) -> list[tuple[str, int, int | None]]:
    rows = await fetch_all(db.reader, "SELECT kind, amount_cents, deposit_id FROM ledger ORDER BY id")
    return [(r["kind"], r["amount_cents"], r["deposit_id"]) for r in rows]


async def notifications(db: Database, kind: str) -> list[dict]:
    rows = await fetch_all(db.reader, "SELECT * FROM notifications WHERE kind = ? ORDER BY id", (kind,))
    return [{**dict(r), "payload": json.loads(r["payload"])} for r in rows]


async def callback_rows(db: Database) -> list[dict]:
    return [dict(r) for r in await fetch_all(db.reader, "SELECT * FROM callbacks ORDER BY id")]


async def refusal_rows(db: Database) -> dict[str, dict]:
    return {r["reason"]: r for r in await callbacks_repo.refusals(db.reader)}


async def deposit(db: Database, deposit_id: int) -> Deposit:
    found = await deposits.get(db.reader, deposit_id)
    assert found is not None
    return found


def signed(data: dict, key: str = KEY) -> bytes:
    body = dict(data)
    body.pop("sign", None)
    body["sign"] = cryptomus_sign(php_json(body), key)
    return php_json(body).encode()


async def assert_ledger_consistent(db: Database) -> None:
    assert await users.balance_mismatches(db.reader) == []


# --- the normal path --------------------------------------------------------------------------------------------------

async def test_paid_webhook_credits_the_balance_once_and_keeps_the_raw_callback(listener, fake, db):
    d = await create(listener)
    assert d.status is DepositStatus.PENDING and d.order_id == fake.last_order_id()
    fake.set_status(d.order_id, "paid")
    body = fake.webhook_body(d.order_id)

    status, text = await fake.send_webhook(None, d.order_id)  # to the url_callback the bot registered

    assert status == 200, text
    assert await balance(db) == 2500
    assert await ledger_rows(db) == [("deposit", 2500, d.id)]
    paid = await deposit(db, d.id)
    assert paid.status is DepositStatus.PAID and paid.credited_cents == 2500
    assert paid.txid == fake.invoice(d.order_id)["txid"]
    [row] = await callback_rows(db)
    assert row["source"] == "cryptomus"
    assert bytes(row["body"]) == body
    assert row["verdict"] == "credited" and row["http_status"] == 200 and row["order_id"] == d.order_id
    assert row["peer"] == "127.0.0.1"
    [note] = await notifications(db, "deposit_paid")
    assert note["chat_id"] == ALICE and note["payload"]["credited_cents"] == 2500
    [admin] = await notifications(db, "admin_deposit_paid")
    assert admin["chat_id"] == ADMIN and admin["payload"]["review"] is False
    await assert_ledger_consistent(db)


async def test_pending_statuses_change_nothing(listener, fake, db):
    d = await create(listener)
    for status in ("check", "confirm_check", "process", "wrong_amount_waiting"):
        fake.set_status(d.order_id, status)
        assert await listener.send(d.order_id) == 200
    assert await balance(db) == 0
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING
    assert {r["verdict"] for r in await callback_rows(db)} == {"unchanged"}


async def test_a_replayed_webhook_credits_once(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    body = fake.webhook_body(d.order_id)
    assert await listener.send(d.order_id, body=body) == 200
    assert await listener.send(d.order_id, body=body) == 200
    assert await balance(db) == 2500
    assert await ledger_rows(db) == [("deposit", 2500, d.id)]
    assert [r["verdict"] for r in await callback_rows(db)] == ["credited", "already_credited"]
    assert len(await notifications(db, "deposit_paid")) == 1


async def test_a_slash_in_additional_data_verifies_and_credits(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    body = fake.webhook_body(d.order_id, additional_data="https://t.me/x/y")
    assert b"\\/" in body
    assert await listener.send(d.order_id, body=body) == 200
    assert await balance(db) == 2500


async def test_duplicates_polls_and_status_checks_racing_credit_exactly_once(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    assert d.next_check_at is not None

    results = await asyncio.gather(
        *(listener.send(d.order_id) for _ in range(50)),
        listener.reconciler.run_once(now=d.next_check_at + 5),
        listener.topup.check_status(ALICE, d.id),
    )

    statuses = results[:50]
    assert statuses == [200] * 50
    assert await balance(db) == 2500
    assert await ledger_rows(db) == [("deposit", 2500, d.id)]
    assert (await deposit(db, d.id)).status is DepositStatus.PAID
    assert len(await notifications(db, "deposit_paid")) == 1
    verdicts = [r["verdict"] for r in await callback_rows(db)]
    assert len(verdicts) == 50
    assert set(verdicts) <= {"credited", "already_credited"} and verdicts.count("credited") <= 1
    await assert_ledger_consistent(db)


# --- refused callbacks ------------------------------------------------------------------------------------------------

async def test_a_forged_signature_is_refused_recorded_and_reported_once_per_window(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    window_before = now_ts() // ALERT_WINDOW_SECONDS

    statuses = [await listener.send(d.order_id, body=fake.forge_webhook_body(d.order_id)) for _ in range(4)]

    window_after = now_ts() // ALERT_WINDOW_SECONDS
    assert statuses == [401] * 4
    assert await balance(db) == 0 and await ledger_rows(db) == []
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING
    assert await callback_rows(db) == []  # nothing stored for a stranger's body: only counted
    assert listener.inbox.refusals.counts() == {("cryptomus", "bad_signature"): 4}
    [sample] = (await refusal_rows(db))["bad_signature"]["samples"]  # written once in the burst, not four times
    assert sample["ip"] == "127.0.0.1" and sample["body"].startswith('{"type":"payment"')
    alerts = await notifications(db, "admin_webhook_rejected")
    assert 1 <= len(alerts) <= window_after - window_before + 1
    assert alerts[0]["chat_id"] == ADMIN
    assert alerts[0]["payload"]["reason"] == "bad_signature" and alerts[0]["payload"]["source"] == "cryptomus"

    # The genuine webhook still gets through afterwards.
    assert await listener.send(d.order_id) == 200
    assert await balance(db) == 2500


async def test_a_tampered_amount_is_refused(listener, fake, db):
    d = await create(listener, 500)
    fake.set_status(d.order_id, "paid")
    body = fake.webhook_body(d.order_id)
    tampered = body.replace(b'"payment_amount_usd":"5.00"', b'"payment_amount_usd":"50.00"')
    assert tampered != body
    assert await listener.send(d.order_id, body=tampered) == 401
    assert await balance(db) == 0


async def test_non_json_is_400(listener, db):
    for body in (b"", b"hello", b"\xff\xfe\xfa", b"[1,2]", b"[" * 5000 + b"]" * 5000):
        status, _ = await listener.post("/webhooks/cryptomus", body)
        assert status == 400, body[:10]
    assert await callback_rows(db) == []
    assert listener.inbox.refusals.counts() == {("cryptomus", "bad_request"): 5}
    [row] = (await refusal_rows(db)).values()
    assert len(row["samples"][-1]["body"]) <= 1024  # bounded: the 10 KB body is cut


async def test_signed_json_without_order_id_is_400(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    data = fake.webhook_data(d.order_id)
    del data["order_id"]
    assert await listener.send(d.order_id, body=signed(data)) == 400
    assert await balance(db) == 0
    assert await callback_rows(db) == [] and "bad_request" in await refusal_rows(db)


async def test_signed_callback_for_an_order_we_never_made_is_acknowledged_and_ignored(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    data = fake.webhook_data(d.order_id)
    data["order_id"] = "d424242-0123456789ab"
    data["uuid"] = "00000000-0000-4000-8000-000000000000"
    status, _ = await listener.post("/webhooks/cryptomus", signed(data))
    assert 200 <= status < 300
    assert await balance(db) == 0 and await ledger_rows(db) == []
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING
    [row] = await callback_rows(db)
    assert row["verdict"] == "unknown_order" and row["order_id"] == "d424242-0123456789ab"


async def test_a_wallet_webhook_is_acknowledged_without_crediting(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    body = fake.webhook_body(d.order_id, extra={"type": "wallet"})
    assert await listener.send(d.order_id, body=body) == 200
    assert await balance(db) == 0
    [row] = await callback_rows(db)
    assert row["verdict"] == "ignored"


@pytest.mark.parametrize("chunked", [False, True])
async def test_a_body_over_64_kib_is_413(listener, fake, db, chunked):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    data = fake.webhook_data(d.order_id, additional_data="x" * (70 * 1024))
    body = signed(data)
    assert len(body) > 70 * 1024

    async def stream():
        for start in range(0, len(body), 8192):
            yield body[start:start + 8192]

    status, _ = await listener.post("/webhooks/cryptomus", stream() if chunked else body)
    assert status == 413
    assert await balance(db) == 0


async def test_wrong_method_is_405(listener):
    for method in ("GET", "PUT", "DELETE"):
        status, _ = await listener.post("/webhooks/cryptomus", None, method=method)
        assert status == 405, method


async def test_the_inactive_gateways_endpoint_is_404(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    status, _ = await listener.post("/webhooks/smartcloudpay", fake.webhook_body(d.order_id))
    assert status == 404
    status, _ = await listener.post("/webhooks/nonexistent", fake.webhook_body(d.order_id))
    assert status == 404
    assert await balance(db) == 0


# --- source allow-list ------------------------------------------------------------------------------------------------

async def test_a_source_outside_the_allow_list_is_403(make_listener, fake, db):
    lst = await make_listener(allowed_sources=CRYPTOMUS_IP)
    d = await create(lst)
    fake.set_status(d.order_id, "paid")
    assert await lst.send(d.order_id) == 403  # genuine body, but from 127.0.0.1
    assert await balance(db) == 0
    assert await callback_rows(db) == []
    assert (await refusal_rows(db))["forbidden_source"]["last_ip"] == "127.0.0.1"
    [alert] = await notifications(db, "admin_webhook_rejected")
    assert alert["payload"]["reason"] == "forbidden_source"


async def test_behind_our_own_proxy_the_forwarded_address_is_allowed(make_listener, fake, db):
    lst = await make_listener(allowed_sources=CRYPTOMUS_IP, trusted_proxies="127.0.0.1")
    d = await create(lst)
    fake.set_status(d.order_id, "paid")
    assert await lst.send(d.order_id, headers={"X-Forwarded-For": CRYPTOMUS_IP}) == 200
    assert await balance(db) == 2500
    [row] = await callback_rows(db)
    assert row["client_ip"] == CRYPTOMUS_IP and row["peer"] == "127.0.0.1"


async def test_a_forwarded_for_header_from_an_untrusted_peer_is_not_believed(make_listener, fake, db):
    lst = await make_listener(allowed_sources=CRYPTOMUS_IP)
    d = await create(lst)
    fake.set_status(d.order_id, "paid")
    assert await lst.send(d.order_id, headers={"X-Forwarded-For": CRYPTOMUS_IP}) == 403
    assert await balance(db) == 0


async def test_a_spoofed_hop_before_our_proxy_is_not_believed(make_listener, fake, db):
    """Our proxy appends the real client: `<spoofed>, <real>`; only the hop our proxy saw counts."""
    lst = await make_listener(allowed_sources=CRYPTOMUS_IP, trusted_proxies="127.0.0.1")
    d = await create(lst)
    fake.set_status(d.order_id, "paid")
    assert await lst.send(d.order_id, headers={"X-Forwarded-For": f"{CRYPTOMUS_IP}, 203.0.113.9"}) == 403
    assert await balance(db) == 0
    assert (await refusal_rows(db))["forbidden_source"]["last_ip"] == "203.0.113.9"


# --- health -----------------------------------------------------------------------------------------------------------

async def test_healthz_reports_database_gateway_and_pending_deposits(listener, fake):
    await create(listener)
    second = await create(listener, 700)
    fake.set_status(second.order_id, "paid")
    assert await listener.send(second.order_id) == 200

    status, text = await listener.post("/healthz", None, method="GET")
    assert status == 200
    health = json.loads(text)
    assert health["ok"] is True and health["database"] is True
    assert health["gateway"]["name"] == "cryptomus"
    assert health["gateway"]["last_ok_seconds_ago"] is not None
    assert health["pending_deposits"] == 1


# --- statuses after payment -------------------------------------------------------------------------------------------

async def test_a_refund_after_payment_credits_nothing_more_and_asks_for_review(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    assert await listener.send(d.order_id) == 200
    assert await balance(db) == 2500

    fake.set_status(d.order_id, "refund_paid")
    assert await listener.send(d.order_id) == 200

    assert await balance(db) == 2500
    assert await ledger_rows(db) == [("deposit", 2500, d.id)]
    [review] = await notifications(db, "admin_deposit_review")
    assert review["chat_id"] == ADMIN and review["deposit_id"] == d.id
    assert "refund_paid" in review["payload"]["reason"]
    assert (await callback_rows(db))[-1]["verdict"] == "flagged"


async def test_a_final_underpayment_credits_what_arrived_and_flags_it(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "wrong_amount", payment_amount_usd="10.00")
    assert await listener.send(d.order_id) == 200

    assert await balance(db) == 1000
    assert await ledger_rows(db) == [("deposit", 1000, d.id)]
    paid = await deposit(db, d.id)
    assert paid.status is DepositStatus.PAID and paid.credited_cents == 1000
    [admin] = await notifications(db, "admin_deposit_paid")
    assert admin["payload"]["review"] is True
    assert admin["payload"]["credited_cents"] == 1000 and admin["payload"]["raw_status"] == "wrong_amount"
    [user_note] = await notifications(db, "deposit_paid")
    assert user_note["payload"]["credited_cents"] == 1000


async def test_cancel_webhook_closes_the_deposit(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "cancel")
    assert await listener.send(d.order_id) == 200
    assert (await deposit(db, d.id)).status is DepositStatus.CANCELLED
    assert await balance(db) == 0


# --- never a 500 ------------------------------------------------------------------------------------------------------

WRONG_TYPES: list[object] = [None, True, False, 0, -1, 1.5, 10**30, -(10**30), "", "x" * 300, "ß∂ƒ\u2028", [],
                             {}, [1, "a"], {"a": {"b": None}}, [[[[[]]]]], "25.00.00", "-5.00", "NaN", "Infinity"]
FIELDS = ("type", "uuid", "order_id", "amount", "payment_amount", "payment_amount_usd", "merchant_amount",
          "commission", "is_final", "status", "from", "wallet_address_uuid", "network", "currency",
          "payer_currency", "additional_data", "txid")


def fuzz_bodies(template: dict, seed: int = 20240611) -> list[tuple[str, bytes, dict[str, str]]]:
    """(kind, body, headers): random bytes, deep nesting, huge numbers, wrong types signed and unsigned.

    Known crashers have their own xfail tests below and are kept out of here: non-ASCII `sign` strings, nesting
    right at the recursion limit, and signed amounts with absurd exponents.
    """
    rng = random.Random(seed)
    out: list[tuple[str, bytes, dict[str, str]]] = []

    def add(kind: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        out.append((kind, body, headers or {}))

    for _ in range(10):
        add("bytes", bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 3000))))
    add("bytes", b"\x00" * 100)
    add("bytes", "{\"type\":\"payment\"}".encode("utf-16"))
    add("deep", b"[" * 5000 + b"]" * 5000)
    add("deep", b'{"a":' * 5000 + b"1" + b"}" * 5000)
    add("deep", b'{"type":"payment","sign":"x","a":' + b"[" * 5000 + b"]" * 5000 + b"}")
    add("huge", b'{"type":"payment","order_id":"x","amount":' + b"9" * 5000 + b',"sign":"ab"}')
    add("huge", b'{"type":"payment","order_id":"x","amount":1e999999,"sign":"ab"}')
    add("huge", b'{"type":"payment","order_id":"x","payment_amount_usd":-1e999999,"sign":"ab"}')
    unsigned = dict(template)
    for _ in range(14):  # unsigned (wrong sign kept), every field a wrong type in turn
        body = dict(unsigned)
        for name in rng.sample(FIELDS, rng.randint(1, 4)):
            body[name] = rng.choice(WRONG_TYPES)
        body["sign"] = rng.choice(["", "0" * 32, template["sign"], "zz", 42, None, [], {"a": 1}])
        add("unsigned-wrong-types", php_json(body).encode())
    for name in FIELDS:  # signed, on our own order, still pending: one field at a time gets a wrong type
        body = {k: v for k, v in template.items() if k != "sign"}
        body["status"], body["is_final"] = "check", False
        body[name] = rng.choice([v for v in WRONG_TYPES if v not in ("NaN", "Infinity")])
        add(f"signed-{name}", signed(body))
    for _ in range(6):  # signed, for an order that isn't ours, several wrong types at once
        body = {k: v for k, v in template.items() if k != "sign"}
        body["order_id"] = f"stranger-{rng.randint(0, 10**9)}"
        for name in rng.sample([f for f in FIELDS if f not in ("type", "order_id")], 4):
            body[name] = rng.choice(WRONG_TYPES)
        add("signed-stranger", signed(body))
    for header in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                   {"X-Forwarded-For": "not-an-ip, ::::, 999.1.1.1"}, {"X-Forwarded-For": "," * 500},
                   {"sign": "é"}, {"User-Agent": "x" * 4000}):
        add("headers", php_json(template).encode(), header)
    return out


async def test_nothing_a_caller_sends_gets_a_500_or_moves_money(listener, fake, db):
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    template = json.loads(fake.webhook_body(d.order_id, key="not-the-key"))  # a paid webhook, badly signed
    fake.set_status(d.order_id, "check", is_final=False)
    bodies = fuzz_bodies(template)
    assert len(bodies) >= 60

    answers = []
    for kind, body, headers in bodies:
        status, _ = await listener.post("/webhooks/cryptomus", body, headers=headers)
        answers.append((kind, status))
    assert [a for a in answers if a[1] not in ALLOWED] == []
    assert {s for k, s in answers if k.startswith("unsigned")} == {401}
    assert {s for k, s in answers if k == "signed-stranger"} == {200}

    assert await balance(db) == 0 and await ledger_rows(db) == []
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING
    # Stored one by one: only what passed the checks; the rest is counted.
    rows = await callback_rows(db)
    stored = [s for _, s in answers if s == 200]
    assert [(r["verdict"] is not None, r["http_status"]) for r in rows] == [(True, s) for s in stored]
    assert sum(listener.inbox.refusals.counts().values()) == len(bodies) - len(stored)

    # The listener is still fine, and this order still settles: the checks above could have failed.
    fake.set_status(d.order_id, "paid")
    assert await listener.send(d.order_id) == 200
    assert await balance(db) == 2500


# --- known bugs -------------------------------------------------------------------------------------------------------

async def test_a_non_ascii_sign_is_401(listener, db):
    body = '{"type":"payment","order_id":"d1-abc","status":"paid","is_final":true,"sign":"ünïcode"}'.encode()
    status, _ = await listener.post("/webhooks/cryptomus", body)
    assert status == 401 and "bad_signature" in await refusal_rows(db)


async def test_no_nesting_depth_gets_a_503(listener, db):
    statuses = {}
    for depth in range(600, 1001):  # the boundary depends on the handler's stack depth (939 here)
        body = ('{"type":"payment","sign":"x","a":' + "[" * depth + "]" * depth + "}").encode()
        status, _ = await listener.post("/webhooks/cryptomus", body)
        statuses[depth] = status
    assert {depth: s for depth, s in statuses.items() if s not in ALLOWED} == {}
    assert all(r["verdict"] is not None for r in await callback_rows(db))


@pytest.mark.parametrize("absurd", ["1e999999", "1e5000"])
async def test_a_signed_absurd_amount_is_held_for_review(listener, fake, db, absurd):
    """Absurd figures never crash the listener nor reach the ledger: the operator is asked to look, once."""
    d = await create(listener)
    fake.set_status(d.order_id, "paid", payment_amount_usd=absurd)
    status = await listener.send(d.order_id)
    assert status == 200
    assert await balance(db) == 0
    [review] = await notifications(db, "admin_deposit_review")
    assert "unreadable payment_amount_usd" in review["payload"]["reason"]


async def test_an_overpayment_is_credited_the_same_whichever_path_reports_it(make_listener, fake, db):
    lst = await make_listener()
    by_webhook = await create(lst)
    by_poll = await create(lst)
    for d in (by_webhook, by_poll):
        fake.set_status(d.order_id, "paid_over")
    assert await lst.send(by_webhook.order_id) == 200
    await lst.topup.check_status(ALICE, by_poll.id)
    assert await lst.send(by_poll.order_id) == 200
    credited = [(await deposit(db, d.id)).credited_cents for d in (by_webhook, by_poll)]
    assert credited[0] == credited[1]


# --- a gateway's figures cross-checked against the deposit before any credit (issue 8, item 1) -----------------------

def _coins(d: Deposit, factor: str) -> str:
    assert d.pay_amount is not None
    return str(d.pay_amount * Decimal(factor))


@pytest.mark.parametrize("case", ["invoice-amount", "payer-amount", "usd-beyond-coins", "underpaid-over"])
async def test_signed_figures_that_contradict_the_deposit_are_held_until_staff_confirm(listener, fake, db, case):
    """The security review's four $10 deposits, credited $100, $100, $99 and $15 before: now held, nothing credited,
    the operator asked to look before any money moves; staff /confirm then credits the deposit's own $10."""
    d = await create(listener, 1000)
    status, extra = {
        "invoice-amount": ("paid", {"amount": "100.00"}),
        "payer-amount": ("paid", {"payer_amount": "1.00", "payment_amount": _coins(d, "1")}),
        "usd-beyond-coins": ("paid_over", {"payment_amount": _coins(d, "1.1"), "payment_amount_usd": "99.00"}),
        "underpaid-over": ("wrong_amount", {"payment_amount": _coins(d, "1.5"), "payment_amount_usd": "15.00"}),
    }[case]
    fake.set_status(d.order_id, status)
    assert await listener.send(d.order_id, extra=extra) == 200

    assert await balance(db) == 0 and await ledger_rows(db) == []
    assert await notifications(db, "admin_deposit_paid") == []
    [review] = await notifications(db, "admin_deposit_review")
    assert review["deposit_id"] == d.id and review["payload"]["reason"]
    held = await deposit(db, d.id)
    assert held.status is DepositStatus.PENDING and held.failure_reason.startswith("held: ")

    # The same report again (Cryptomus retries) asks once and still credits nothing.
    assert await listener.send(d.order_id, extra=extra) == 200
    assert await balance(db) == 0 and len(await notifications(db, "admin_deposit_review")) == 1

    confirmed = await listener.settler.settle_payment(PaymentUpdate(
        gateway="cryptomus", order_id=d.order_id, state=PaymentState.PAID, source="admin", note="confirmed by staff"))
    assert confirmed.outcome is Outcome.CREDITED
    assert await ledger_rows(db) == [("deposit", 1000, d.id)]


async def test_an_overpayment_is_credited_up_to_exactly_max_credit_factor_and_held_above(listener, fake, db):
    """MAX_CREDIT_FACTOR (10) times the deposit is credited; one cent more, with the coins to back it, is held."""
    at_limit, above = await create(listener, 1000), await create(listener, 1000)
    fake.set_status(at_limit.order_id, "paid_over")
    assert await listener.send(at_limit.order_id, extra={"payment_amount": _coins(at_limit, "10"),
                                                         "payment_amount_usd": "100.00"}) == 200
    fake.set_status(above.order_id, "paid_over")
    assert await listener.send(above.order_id, extra={"payment_amount": _coins(above, "10.1"),
                                                      "payment_amount_usd": "100.01"}) == 200

    assert await ledger_rows(db) == [("deposit", 10_000, at_limit.id)]
    [review] = await notifications(db, "admin_deposit_review")
    assert review["deposit_id"] == above.id and "implausible" in review["payload"]["reason"]
    assert (await deposit(db, above.id)).status is DepositStatus.PENDING


async def test_usd_credited_never_exceeds_the_coins_received_at_the_deposits_quote(listener, fake, db):
    """Within the 1 % tolerance the report is believed, but the credit is what the coins are worth, no more."""
    d = await create(listener, 1000)
    fake.set_status(d.order_id, "paid_over")
    assert await listener.send(d.order_id, extra={"payment_amount": _coins(d, "1.1"),
                                                  "payment_amount_usd": "11.11"}) == 200
    assert await ledger_rows(db) == [("deposit", 1100, d.id)]


async def test_a_percent_coupon_pays_its_bonus_on_at_most_the_expected_amount(listener, fake, db):
    async with db.transaction() as tx:
        await coupon_repo.create(tx, code="TEN", kind=CouponKind.PERCENT, value=10)
    d = await listener.topup.create_deposit(user_id=ALICE, chat_id=ALICE, coin="USDT", network="TRON",
                                            amount_cents=1000, coupon_code="TEN")
    fake.set_status(d.order_id, "paid_over")
    assert await listener.send(d.order_id, extra={"payment_amount": _coins(d, "2"),
                                                  "payment_amount_usd": "20.00"}) == 200
    assert await ledger_rows(db) == [("deposit", 2000, d.id), ("bonus", 100, d.id)]


async def test_no_coupon_bonus_when_what_arrived_is_below_the_coupons_minimum(listener, fake, db):
    async with db.transaction() as tx:
        coupon_id = await coupon_repo.create(tx, code="MIN10", kind=CouponKind.FIXED, value=300,
                                             min_amount_cents=1000)
    d = await listener.topup.create_deposit(user_id=ALICE, chat_id=ALICE, coin="USDT", network="TRON",
                                            amount_cents=1000, coupon_code="MIN10")
    fake.set_status(d.order_id, "wrong_amount")
    assert await listener.send(d.order_id, extra={"payment_amount": _coins(d, "0.5"),
                                                  "payment_amount_usd": "5.00"}) == 200
    assert await ledger_rows(db) == [("deposit", 500, d.id)]
    coupon = await coupon_repo.get(db.reader, coupon_id)
    assert coupon is not None and coupon.used_count == 0  # given back: the user may use it on a real $10 top-up


# --- nothing stored before it is known to be worth storing (issue 8, item 4) ----------------------------------------

async def test_a_flood_of_anonymous_posts_stores_no_bodies_only_a_bounded_count(make_listener, fake, db):
    """300 anonymous 60 KiB POSTs (inactive endpoint, disallowed source, bad signature) added 24 MB to the database;
    now none is stored, the refusals are counted, and the database grows by a few pages at most."""
    lst = await make_listener(allowed_sources=CRYPTOMUS_IP)
    await create(lst)
    size_before = await _stored_bytes(db)
    junk = b'{"type":"payment","sign":"00","pad":"' + b"x" * (60 * 1024) + b'"}'
    for path in ("/webhooks/smartcloudpay", "/webhooks/cryptomus") * 150:
        status, _ = await lst.post(path, junk)
        assert status in (403, 404)
    assert await callback_rows(db) == []
    assert lst.inbox.refusals.counts() == {("smartcloudpay", "inactive"): 150, ("cryptomus", "forbidden_source"): 150}
    assert sum(len(r["samples"]) for r in (await refusal_rows(db)).values()) <= 10
    assert await _stored_bytes(db) - size_before < 256 * 1024


async def _stored_bytes(db: Database) -> int:
    """What the database takes on disk: the SQLite file and its WAL, or this test's schema on PostgreSQL."""
    if db.dialect == "postgresql":
        return int(await fetch_value(db.reader, """
            SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0) FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = current_schema() AND c.relkind = 'r'"""))
    wal = db.path.with_name(db.path.name + "-wal")
    return db.path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)


# --- the credit and its notifications are one transaction -------------------------------------------------------

async def test_a_failure_while_queueing_the_notifications_leaves_no_credit_at_all(listener, fake, db, monkeypatch):
    """Not only a SIGKILL between two commits: if queueing the customer's "payment received" fails, the credit is
    rolled back with it (Cryptomus is asked to retry), and the retry credits once and tells the customer once."""
    import services.settlement

    real_queue_all = services.settlement.queue_all
    failures = []

    async def queue_failing_once(tx, items):  # the credit queues its notifications in one statement
        if any(item.payload.kind.value == "deposit_paid" for item in items) and not failures:
            failures.append(items)
            raise sqlite3.OperationalError("disk I/O error")
        return await real_queue_all(tx, items)

    monkeypatch.setattr(services.settlement, "queue_all", queue_failing_once)
    d = await create(listener)
    fake.set_status(d.order_id, "paid")
    assert await listener.send(d.order_id) == 503
    assert failures and await ledger_rows(db) == [] and await balance(db) == 0
    assert (await deposit(db, d.id)).status is DepositStatus.PENDING
    assert await notifications(db, "deposit_paid") == [] and await notifications(db, "admin_deposit_paid") == []

    assert await listener.send(d.order_id) == 200
    assert await ledger_rows(db) == [("deposit", 2500, d.id)]
    assert len(await notifications(db, "deposit_paid")) == 1
