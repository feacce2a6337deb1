"""The cluster test: three real `python -m bot` instances on one PostgreSQL schema and one Redis prefix, in webhook
mode, while the delivery leader is killed with SIGKILL.

Telegram is the fake Bot API (answering each send 50 ms after it arrived, Telegram's round trip: the window in which
a dying sender has delivered a message without knowing it); the gateway is the fake Cryptomus, which signs its
callbacks and answers the reconciler's polls. The test plays Telegram and the gateway's callback sender: each
update or callback goes to one instance (round robin, as a load balancer would), and on a refused connection or a
5xx it is sent again to the next one, as Telegram and the gateways retry.

1. Conversations arrive as webhook updates spread over the instances: each user creates a deposit, every step on
   another instance than the one before.
2. The stream: deposit after deposit is paid; each gets 50 concurrent duplicate "paid" callbacks spread over the
   instances, while the reconciler (every second, on every instance) polls the same deposits and more users talk to
   the bot. At 40% of the stream the instance holding the leader lock is killed with SIGKILL. A talking user
   whose "Create" tap that instance had taken (and answered) gets, instead of the card, the message the product
   gives for a creation cut short: the new leader's reconciler says so once the creation is a minute old.
3. Afterwards: no deposit credited twice and every balance equals its ledger sum; every paid deposit notified; at
   most one message sent twice (one kill), and only one that was in flight at the kill; the new leader resumed
   sending within two seconds; no 500s anywhere.

Bounded: about a minute here. Needs PostgreSQL and Redis (skips by hand without them, fails under CI=true).
"""
from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import json
import os
import re
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest

from bot.web import TELEGRAM_WEBHOOK_PATH
from services.reconciler import STUCK_CREATION_SECONDS
from tests.conftest import TEST_REDIS_URL
from tests.fakes.bot_api import FakeBotAPI, callback_update, message_update
from tests.fakes.cryptomus import FakeCryptomus
from tests.test_e2e import bot_env, free_port, text_of
from tests.zygote import ForkedBot, Zygote

pytestmark = pytest.mark.cluster

INSTANCES = 3
DEPOSITS = 20
DUPLICATE_CALLBACKS = 50
KILL_AT = 0.4
CHATTY_USERS = 10  # talk to the bot during the stream, through the kill
MERCHANT, PAYMENT_KEY = "cluster-merchant", "cluster-cryptomus-payment-key"
WEBHOOK_SECRET = "cluster-webhook-secret"
PAID_RE = re.compile(r"Payment received for deposit #(\d+)")
CARD_RE = re.compile(r"Deposit #(\d+)")
INTERRUPTED = "could not be created: the bot was restarted in the middle"
_update_ids = itertools.count(7_000_000)

@dataclass
class Instance:
    """One bot of the cluster: its process and the port its webhook listener is on."""

    process: ForkedBot
    port: int

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def alive(self) -> bool:
        return self.process.returncode is None

    def log(self) -> str:
        return self.process.log()


class Cluster:
    def __init__(self, env: dict[str, str], tmp_path: Path) -> None:
        self.env = env
        self.tmp_path = tmp_path
        self.instances: list[Instance] = []
        self._zygote: Zygote | None = None

    async def start(self, count: int) -> None:
        self._zygote = await Zygote.spawn(self.env, self.tmp_path / "zygote.log")
        for n in range(count):
            port = free_port()
            process = await self._zygote.start(self.tmp_path / f"bot{n}.log", WEB_PORT=str(port))
            self.instances.append(Instance(process, port))
        await asyncio.gather(*(self.wait_healthy(i) for i in self.instances))

    async def health(self, instance: Instance) -> dict[str, Any] | None:
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http, \
                    http.get(f"http://127.0.0.1:{instance.port}/healthz") as response:
                return await response.json() if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def wait_healthy(self, instance: Instance, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while await self.health(instance) is None:
            if not instance.alive:
                raise AssertionError(f"instance {instance.pid} exited:\n{instance.log()[-3000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"instance {instance.pid} not healthy:\n{instance.log()[-3000:]}")
            await asyncio.sleep(0.05)

    async def leader(self, timeout: float = 15) -> Instance:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for instance in self.instances:
                if instance.alive and ((await self.health(instance)) or {}).get("leader"):
                    return instance
            await asyncio.sleep(0.05)
        raise TimeoutError("no instance leads")

    def kill(self, instance: Instance) -> None:
        os.kill(instance.pid, signal.SIGKILL)

    async def close(self) -> None:
        for instance in self.instances:
            if instance.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(instance.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while any(i.alive for i in self.instances) and time.monotonic() < deadline:  # noqa: ASYNC110 - a zygote's report
            await asyncio.sleep(0.05)
        for instance in self.instances:
            if instance.alive:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(instance.pid, signal.SIGKILL)
        if self._zygote is not None:
            await self._zygote.close()


@dataclass
class Sender:
    """Sends each request to the next instance; on a refused connection or a 5xx, to the one after (a retry)."""

    cluster: Cluster
    http: aiohttp.ClientSession
    statuses: Counter[Any] = field(default_factory=Counter)
    _next: itertools.count = field(default_factory=itertools.count)

    async def post(self, path: str, *, body: bytes, headers: dict[str, str], attempts: int = 40) -> int:
        return (await self.send(path, body=body, headers=headers, attempts=attempts))[0]

    async def send(self, path: str, *, body: bytes, headers: dict[str, str],
                   attempts: int = 40) -> tuple[int, Instance]:
        """The answer's status and the instance that gave it."""
        start = next(self._next)
        for attempt in range(attempts):
            instance = self.cluster.instances[(start + attempt) % len(self.cluster.instances)]
            try:
                async with self.http.post(f"http://127.0.0.1:{instance.port}{path}", data=body,
                                          headers=headers) as response:
                    self.statuses[response.status] += 1
                    if response.status < 500:
                        return response.status, instance
            except (aiohttp.ClientConnectionError, TimeoutError):
                self.statuses["connection refused or cut"] += 1
            await asyncio.sleep(0.05)
        raise AssertionError(f"{path}: no instance accepted it in {attempts} attempts")


class TelegramSide:
    """Plays Telegram: users' updates POSTed to the webhook, read back from the fake Bot API."""

    def __init__(self, api: FakeBotAPI, sender: Sender) -> None:
        self.api = api
        self.sender = sender

    async def deliver(self, update: dict[str, Any]) -> Instance:
        """POST the update to the webhook (Telegram's way); the instance that took it."""
        body = json.dumps({"update_id": next(_update_ids), **update}).encode()
        status, instance = await self.sender.send(TELEGRAM_WEBHOOK_PATH, body=body, headers={
            "Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": WEBHOOK_SECRET})
        assert status == 200, status
        return instance

    async def say(self, user: int, text: str) -> None:
        await self.deliver(message_update(user, text))

    def newest(self, user: int) -> int:
        return max((mid for (cid, mid) in self.api.messages if cid == user), default=0)

    async def tap(self, user: int, label: str, since: int, needle: str = "") -> Instance:
        def button() -> tuple[int, str] | None:
            for message in reversed(self.api.sent_to(user)):
                if message["message_id"] < since or needle not in text_of(message):
                    continue
                for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
                    for b in row:
                        if label in b.get("text", "") and "callback_data" in b:
                            return message["message_id"], b["callback_data"]
            return None

        message_id, data = await self.api.wait_for(lambda _: button(), timeout=30)
        update = callback_update(user, data, message_id=message_id)
        update["callback_query"]["message"] = copy.deepcopy(self.api.messages[(user, message_id)])
        return await self.deliver(update)

    async def create_deposit(self, user: int, amount: str) -> int | None:
        """/topup → USDT → TRON → amount → Create, each step as a webhook update; the deposit's id.

        None when the instance that took the Create tap was killed while it asked the gateway: it had answered
        Telegram already, so no other instance gets that tap again, and the product's answer is the reconciler's
        (on the new leader, once the creation is a minute old): "could not be created, nothing was charged"."""
        since = self.newest(user) + 1
        await self.say(user, "/topup")
        await self.tap(user, "USDT", since)
        await self.tap(user, "TRON", since)
        await self.api.wait_for(lambda a: any(m["message_id"] >= since and "How much" in text_of(m)
                                              for m in a.sent_to(user)), timeout=30)
        await self.say(user, amount)
        creator = await self.tap(user, "Create", since, needle=f"${amount}")

        def card_or_interruption(api: FakeBotAPI) -> dict[str, Any] | None:
            return next((m for m in api.sent_to(user) if m["message_id"] >= since
                         and ("photo" in m or INTERRUPTED in text_of(m))), None)

        card = await self.api.wait_for(card_or_interruption, timeout=30 + STUCK_CREATION_SECONDS + 30)
        if INTERRUPTED in text_of(card):
            assert not creator.alive, f"creation interrupted on an instance that is alive: {text_of(card)}"
            return None
        match = CARD_RE.search(text_of(card))
        assert match is not None, text_of(card)
        return int(match.group(1))


async def test_three_instances_survive_the_leader_s_sigkill_without_double_credit_or_lost_notice(
        tmp_path: Path, postgres_url: str, redis_prefix: str) -> None:
    began = time.monotonic()
    async with FakeBotAPI(answer_delay=0.05) as api, \
            FakeCryptomus(merchant_id=MERCHANT, payment_key=PAYMENT_KEY) as gateway:
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, DATABASE_URL=postgres_url,
                      REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix, TELEGRAM_WEBHOOK="true",
                      PUBLIC_URL="https://bot.example.test", TELEGRAM_WEBHOOK_SECRET=WEBHOOK_SECRET,
                      PAYMENT_GATEWAY="cryptomus", CRYPTOMUS_API_URL=gateway.base_url,
                      CRYPTOMUS_MERCHANT_ID=MERCHANT, CRYPTOMUS_API_KEY=PAYMENT_KEY, WEB_HOST="127.0.0.1",
                      RECONCILE_INTERVAL_SECONDS="1", MAX_OPEN_DEPOSITS="5", MAX_DEPOSITS_PER_HOUR="100")
        env.pop("ADMIN_CHAT_ID")  # the admin chat's one-message-a-second pace would only slow the test down
        cluster = Cluster(env, tmp_path)
        try:
            await cluster.start(INSTANCES)
            first_leader = await cluster.leader()
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
                telegram = TelegramSide(api, Sender(cluster, http))
                callbacks = Sender(cluster, http)
                figures = await run_the_stream(api, gateway, cluster, telegram, callbacks, first_leader)
            await check_the_money(postgres_url)
            elapsed = time.monotonic() - began
            print(f"\ncluster figures: {json.dumps({**figures, 'seconds': round(elapsed, 1)})}")
            for instance in cluster.instances:
                assert "Traceback" not in instance.log(), instance.log()[-5000:]
        except BaseException:
            for instance in cluster.instances:
                print(f"--- instance {instance.pid} (port {instance.port}) ---\n{instance.log()[-4000:]}")
            raise
        finally:
            await cluster.close()


async def run_the_stream(api: FakeBotAPI, gateway: FakeCryptomus, cluster: Cluster, telegram: TelegramSide,
                         callbacks: Sender, leader: Instance) -> dict[str, Any]:
    # 1. Conversations over the webhook create the deposits (each user's steps land on different instances).
    users = list(range(710_001, 710_001 + DEPOSITS))
    deposit_ids = await asyncio.gather(*(telegram.create_deposit(user, f"{10 + n}") for n, user in enumerate(users)))
    assert None not in deposit_ids and len(set(deposit_ids)) == DEPOSITS  # no instance was killed yet
    # The bot names each order after its deposit: d<deposit id>-<random>.
    order_of = {int(order[1:].split("-")[0]): order for order in gateway.invoices}

    # 2. The stream: payments with duplicate callbacks, the reconciler polling, other users chatting; a SIGKILL.
    kill_at = int(DEPOSITS * KILL_AT)

    async def kill_during_a_send() -> tuple[float, int]:
        """SIGKILL the leader while Telegram holds back its answer to a notice: the message has arrived, and the
        leader dies not knowing it (the one message the issue allows to be sent twice per kill)."""
        seen = len(api.calls)

        def in_flight() -> int | None:
            for call in api.calls[seen:]:
                if call.method == "sendMessage" and (m := PAID_RE.search((call.result or {}).get("text", ""))):
                    return int(m.group(1))
            return None

        deposit_id = await api.wait_for(lambda _: in_flight(), timeout=30)
        cluster.kill(leader)
        return time.monotonic(), deposit_id

    async def pay(deposit_id: int) -> None:
        order = order_of[deposit_id]
        gateway.set_status(order, "paid")
        body = gateway.webhook_body(order)
        statuses = await asyncio.gather(*(callbacks.post("/webhooks/cryptomus", body=body, headers={
            "Content-Type": "application/json"}) for _ in range(DUPLICATE_CALLBACKS)))
        assert set(statuses) == {200}, Counter(statuses)

    async def chat(user: int) -> bool:
        """True when the deposit card came; False when the kill cut the creation short (see create_deposit)."""
        await telegram.say(user, "/start")
        created = await telegram.create_deposit(user, "7")
        await telegram.say(user, "/balance")
        return created is not None

    chatters = [asyncio.create_task(chat(user)) for user in range(720_001, 720_001 + CHATTY_USERS)]
    payments = []
    killer = None
    for n, deposit_id in enumerate(deposit_ids):
        if n == kill_at:
            killer = asyncio.create_task(kill_during_a_send())
        payments.append(asyncio.create_task(pay(deposit_id)))
        await asyncio.sleep(0.15)
    assert killer is not None
    killed_at, in_flight = await killer
    await asyncio.gather(*payments)
    carded = await asyncio.gather(*chatters)

    # 3. Every paid deposit is notified, by whichever instance leads now.
    def notified() -> Counter[int]:
        return Counter(int(m.group(1)) for user in users for message in api.sent_to(user)
                       if (m := PAID_RE.search(text_of(message))))

    await api.wait_for(lambda _: set(notified()) >= set(deposit_ids), timeout=40)
    new_leader = await cluster.leader()
    assert new_leader.pid != leader.pid and not leader.alive
    # The notice in flight at the kill: unless the leader recorded it in the instant before dying, its lease runs
    # out and the new leader sends it again. Wait for that (or the lease's end) before counting.
    with contextlib.suppress(TimeoutError):
        await api.wait_for(lambda _: notified()[in_flight] >= 2, timeout=15)

    copies = notified()
    duplicated = {d: c for d, c in copies.items() if c > 1}
    assert sum(c - 1 for c in duplicated.values()) <= 1, duplicated  # one kill: at most one message twice
    paid_messages = [(int(m.group(1)), c.at) for c in api.calls if c.method == "sendMessage" and not c.failed
                     and (m := PAID_RE.search((c.result or {}).get("text", "")))]
    assert set(duplicated) <= {in_flight}, (duplicated, in_flight)  # ... and only the one in flight at the kill

    # The start-up chores ran once for the cluster, not once per instance (and again on the new leader).
    set_webhook = [c.at for c in api.calls if c.method == "setWebhook" and not c.failed]
    assert len([at for at in set_webhook if at < killed_at]) == 1 and len(set_webhook) == 2, set_webhook
    # Delivery resumed: the first notification the new leader sent after the kill (handler replies don't count).
    first_copies = sorted(min(at for d, at in paid_messages if d == deposit_id) for deposit_id in deposit_ids)
    after = [at for at in first_copies if at > killed_at]
    resumed = after[0] - killed_at if after else None
    assert resumed is not None and resumed <= 2.0, resumed
    statuses = {**{f"telegram {k}": v for k, v in telegram.sender.statuses.items()},
                **{f"callback {k}": v for k, v in callbacks.statuses.items()}}
    assert not [k for k in statuses if k.endswith(" 500")], statuses
    return {"deposits": DEPOSITS, "callbacks": DEPOSITS * DUPLICATE_CALLBACKS, "set_webhook_calls": len(set_webhook),
            "messages_sent_twice": sum(c - 1 for c in duplicated.values()),
            "resent_after_kill_seconds": round(max(at for d, at in paid_messages if d == in_flight) - killed_at, 3)
            if duplicated else None,
            "resumed_after_kill_seconds": round(resumed, 3),
            "creations_cut_by_the_kill": carded.count(False),
            "longest_gap_between_notices_seconds": round(max(b - a for a, b in itertools.pairwise(first_copies)), 3),
            "statuses": statuses}


async def check_the_money(postgres_url: str) -> None:
    conn = await asyncpg.connect(postgres_url.split("?")[0], server_settings={
        "search_path": re.search(r"search_path=([^&]+)", postgres_url).group(1)})  # type: ignore[union-attr]
    try:
        doubled = await conn.fetch("SELECT deposit_id FROM ledger WHERE kind = 'deposit' GROUP BY deposit_id "
                                   "HAVING COUNT(*) > 1")
        assert doubled == []
        mismatched = await conn.fetch("""
            SELECT u.id FROM users u LEFT JOIN ledger l ON l.user_id = u.id
            GROUP BY u.id, u.balance_cents HAVING u.balance_cents <> COALESCE(SUM(l.amount_cents), 0)""")
        assert mismatched == []
        paid = await conn.fetchval("SELECT COUNT(*) FROM deposits WHERE status = 'paid'")
        credits = await conn.fetchval("SELECT COUNT(*) FROM ledger WHERE kind = 'deposit'")
        assert paid == credits == DEPOSITS
        # Every paid notice ends 'sent'. The one in flight at the kill may still be on its way there: the new leader
        # re-sends it when its 10 s lease runs out and records it once Telegram has answered. Poll for that.
        unsent_query = "SELECT COUNT(*) FROM notifications WHERE status <> 'sent' AND kind = 'deposit_paid'"
        for _ in range(200):
            unsent = await conn.fetchval(unsent_query)
            if unsent == 0:
                break
            await asyncio.sleep(0.1)
        assert unsent == 0
    finally:
        await conn.close()
