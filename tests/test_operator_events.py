"""Operator events: written with the change, signed, delivered at least once (through 500s and a killed process),
and verifiable with the README's own receiver."""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from bot.operator_webhook import SIGNATURE_HEADER, EventSender, sign
from services.gateways.base import PaymentState, PaymentUpdate
from services.store import deposits as deposit_repo
from services.store.db import execute, fetch_all, fetch_value
from tests.test_e2e import BotProcess, bot_env, eventually, free_port, message_with
from tests.fakes.bot_api import FakeBotAPI
from tests.operator import API_KEY, give, listening, operator_api

ROOT = Path(__file__).resolve().parent.parent
SECRET = "whsec-test-0123456789abcdef"
ANNA = 6001


class Receiver:
    """The operator's endpoint: records what arrives, checks the signature, answers what the test says."""

    def __init__(self) -> None:
        self.status = 200
        self.received: list[dict[str, Any]] = []     # every attempt, with its status
        self.app = web.Application()
        self.app.router.add_post("/events", self.handle)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        parts = dict(p.split("=", 1) for p in request.headers[SIGNATURE_HEADER].split(","))
        expected = hmac.new(SECRET.encode(), parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
        self.received.append({"event": json.loads(body), "valid": hmac.compare_digest(expected, parts["v1"]),
                              "status": self.status})
        return web.Response(status=self.status)

    def acknowledged(self) -> list[dict[str, Any]]:
        return [r["event"] for r in self.received if 200 <= r["status"] < 300]


@asynccontextmanager
async def receiving() -> AsyncIterator[tuple[Receiver, str]]:
    receiver = Receiver()
    async with listening(receiver.app) as base:
        yield receiver, f"{base}/events"


async def due_now(db: Any) -> None:
    async with db.transaction() as tx:
        await execute(tx, "UPDATE notifications SET next_attempt_at = 0 WHERE status = 'pending'")


async def test_a_charge_and_a_payment_reach_the_operator_signed_with_the_customers_external_id(
        api: FakeBotAPI, database_url: str) -> None:
    async with receiving() as (receiver, url), operator_api(
            api, database_url, OPERATOR_WEBHOOK_URL=url, OPERATOR_WEBHOOK_SECRET=SECRET,
            PAYMENT_GATEWAY="sandbox") as op:
        await give(op.db, ANNA, 500)
        async with op.db.transaction() as tx:
            await execute(tx, "UPDATE users SET external_id = 'shop-42' WHERE id = ?", (ANNA,))
        charge = (await op.charge(ANNA, "2.00", "c1", description="SMS"))[1]
        sender = EventSender(op.db, url, SECRET)
        try:
            assert await sender.deliver_due() == 1
        finally:
            await sender.close()
        [attempt] = receiver.received
        event = attempt["event"]
        assert attempt["valid"] and event["id"].startswith("evt_") and event["type"] == "balance.changed"
        assert isinstance(event["created"], int)
        assert event["data"] == {"user_id": ANNA, "external_id": "shop-42", "balance": "3.00", "balance_cents": 300,
                                 "amount": "-2.00", "amount_cents": -200, "kind": "charge",
                                 "ledger_id": event["data"]["ledger_id"], "charge_id": charge["charge_id"]}


async def test_a_receiver_that_answers_500_gets_the_same_event_again_until_it_says_2xx(
        api: FakeBotAPI, database_url: str) -> None:
    async with receiving() as (receiver, url), operator_api(
            api, database_url, OPERATOR_WEBHOOK_URL=url, OPERATOR_WEBHOOK_SECRET=SECRET) as op:
        await give(op.db, ANNA, 500)
        await op.charge(ANNA, "1.00", "c1")
        sender = EventSender(op.db, url, SECRET)
        try:
            receiver.status = 500
            assert await sender.deliver_due() == 0
            # retried later, not at once: backoff
            assert await sender.deliver_due() == 0 and len(receiver.received) == 1
            await due_now(op.db)
            receiver.status = 200
            assert await sender.deliver_due() == 1
            await due_now(op.db)
            assert await sender.deliver_due() == 0
        finally:
            await sender.close()
        first, second = receiver.received
        assert first["event"] == second["event"] and first["status"] == 500 and second["status"] == 200
        last_error = await fetch_value(op.db.reader, "SELECT last_error FROM notifications WHERE channel = 'operator'")
        assert last_error == "HTTP 500"


async def test_deposit_events_carry_the_deposit_and_the_new_balance(api: FakeBotAPI, database_url: str) -> None:
    from tests.fakes.smsonline import FakeSMSOnline

    async with receiving() as (receiver, url), FakeSMSOnline(user_id="u", api_key="k") as sms, operator_api(
            api, database_url, OPERATOR_WEBHOOK_URL=url, OPERATOR_WEBHOOK_SECRET=SECRET,
            PAYMENT_GATEWAY="smsonline", SMSONLINE_USER_ID="u", SMSONLINE_API_KEY="k",
            SMSONLINE_API_URL=sms.base_url) as op:
        await give(op.db, ANNA, 0)
        async with op.db.transaction() as tx:
            await execute(tx, "UPDATE users SET external_id = 'shop-7' WHERE id = ?", (ANNA,))
        async with op.db.transaction() as tx:
            deposit_id = await deposit_repo.reserve(tx, user_id=ANNA, chat_id=ANNA, gateway="smsonline", coin="USDT",
                                                    network="TRON", amount_cents=700, coupon_id=None,
                                                    gateway_coupon=None)
            await deposit_repo.mark_created(tx, deposit_id, order_id="o-1", address="T1", pay_amount=None,
                                            pay_currency="USDT", expires_at=2**31, payment_url=None,
                                            quoted_cents=700, first_check_at=0)
        await op.h.app.settler.settle_payment(PaymentUpdate(gateway="smsonline", order_id="o-1",
                                                            state=PaymentState.PAID, paid_cents=700, txid="tx1"))
        sender = EventSender(op.db, url, SECRET)
        try:
            await sender.deliver_due()
        finally:
            await sender.close()
        events = {e["type"]: e["data"] for e in receiver.acknowledged()}
        assert set(events) == {"balance.changed", "deposit.paid"}
        paid = events["deposit.paid"]
        assert paid["deposit_id"] == deposit_id and paid["status"] == "paid" and paid["credited"] == "7.00"
        assert paid["balance"] == "7.00" and paid["balance_cents"] == 700 and paid["external_id"] == "shop-7"
        assert paid["txid"] == "tx1" and paid["user_id"] == ANNA
        assert events["balance.changed"]["deposit_id"] == deposit_id


def start_receiver(script: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OPERATOR_WEBHOOK_SECRET": SECRET, "PORT": str(port)}, text=True)


async def test_the_readme_receiver_verifies_the_signature(tmp_path: Path) -> None:
    """The 15-line receiver in the README, run as it is: it accepts our signed event and refuses a forged one."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code = re.search(r"<!-- receiver -->\s*```python\n(.*?)```", readme, re.S)
    assert code is not None, "README: the receiver snippet is marked <!-- receiver -->"
    assert len(code.group(1).strip().splitlines()) <= 15
    script = tmp_path / "receiver.py"
    script.write_text(code.group(1), encoding="utf-8")
    port = free_port()
    proc = start_receiver(script, port)
    try:
        body = json.dumps({"id": "evt_1", "type": "user.linked", "created": 1,
                           "data": {"user_id": 1, "external_id": "x"}}, separators=(",", ":")).encode()
        url = f"http://127.0.0.1:{port}/"
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                try:
                    async with session.post(url, data=b"{}", headers={SIGNATURE_HEADER: "t=1,v1=00"}) as answer:
                        assert answer.status == 400
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.1)
            import time
            signed = sign(SECRET, int(time.time()), body)
            for _ in range(2):  # a repeat is acknowledged and dropped
                async with session.post(url, data=body, headers={SIGNATURE_HEADER: signed}) as answer:
                    assert answer.status == 200
            forged = sign("not-the-secret", int(time.time()), body)
            async with session.post(url, data=body, headers={SIGNATURE_HEADER: forged}) as answer:
                assert answer.status == 400
            stale = sign(SECRET, int(time.time()) - 3600, body)
            async with session.post(url, data=body, headers={SIGNATURE_HEADER: stale}) as answer:
                assert answer.status == 400
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=10)[0]
    assert output.count("user.linked") == 1


async def test_an_event_committed_before_the_process_is_killed_is_delivered_after_the_restart(
        tmp_path: Path, database_url: str) -> None:
    """The real `python -m bot`: a link binds a customer (user.linked is committed), the receiver is failing, the
    process is killed with SIGKILL; the next process delivers the event, once acknowledged, never again."""
    log_path = tmp_path / "bot.log"
    bots: list[BotProcess] = []
    try:
        async with FakeBotAPI() as api, receiving() as (receiver, url), aiohttp.ClientSession() as session:
            env = bot_env(tmp_path, DATABASE_URL=database_url, TELEGRAM_API_URL=api.base_url,
                          PAYMENT_GATEWAY="sandbox", OPERATOR_API_KEY=API_KEY, OPERATOR_WEBHOOK_URL=url,
                          OPERATOR_WEBHOOK_SECRET=SECRET, WEB_PORT=str(free_port()), WEB_HOST="127.0.0.1")
            receiver.status = 500
            bots.append(await BotProcess.start(env, log_path))
            base = f"http://127.0.0.1:{env['WEB_PORT']}"
            link = None
            for _ in range(200):
                try:
                    async with session.post(f"{base}/api/v1/links", json={"external_id": "shop-1"},
                                            headers={"Authorization": f"Bearer {API_KEY}"}) as answer:
                        if answer.status == 201:
                            link = await answer.json()
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            assert link is not None and link["url"].startswith("https://t.me/topup_test_bot?start=")
            api.push_message(ANNA, f"/start {link['token']}")
            await api.wait_for(lambda a: message_with(a, ANNA, "shop-1"), timeout=20)
            await eventually(lambda: len(receiver.received) >= 1, timeout=20)
            await bots[0].kill()  # SIGKILL: nothing is flushed or closed
            refused = receiver.received[0]["event"]
            assert refused["type"] == "user.linked" and refused["data"] == {"user_id": ANNA, "external_id": "shop-1"}

            receiver.status = 200
            bots.append(await BotProcess.start(env, log_path))
            await eventually(lambda: len(receiver.acknowledged()) >= 1, timeout=30)
            await asyncio.sleep(2)
            assert receiver.acknowledged() == [refused]
            assert all(r["valid"] for r in receiver.received)
            assert await bots[1].stop(timeout=10) == 0
        assert SECRET not in bots[-1].log() and API_KEY not in bots[-1].log()
    finally:
        for bot in bots:
            await bot.kill()
        if bots:
            print(f"--- bot output ({log_path}) ---\n{bots[-1].log()}")


async def test_the_event_is_written_in_the_transaction_of_the_change(api: FakeBotAPI, database_url: str) -> None:
    """A charge that fails (402) leaves no event; one that succeeds leaves exactly one, in the same commit."""
    async with receiving() as (_, url), operator_api(
            api, database_url, OPERATOR_WEBHOOK_URL=url, OPERATOR_WEBHOOK_SECRET=SECRET) as op:
        await give(op.db, ANNA, 100)
        assert (await op.charge(ANNA, "5.00", "too-much"))[0] == 402
        assert await fetch_value(op.db.reader, "SELECT COUNT(*) FROM notifications WHERE channel = 'operator'") == 0
        assert (await op.charge(ANNA, "1.00", "fits"))[0] == 201
        rows = await fetch_all(op.db.reader, "SELECT kind FROM notifications WHERE channel = 'operator'")
        assert [r[0] for r in rows] == ["balance.changed"]
