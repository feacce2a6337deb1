"""Fault injection: crashes, failing gateways, a throttling Bot API and a busy database.

Every test is bounded in time and every random choice comes from a seeded `random.Random`, so a failing run can be
repeated exactly (change SEED to explore other interleavings).

1. SIGKILL loop: `python -m bot` on Cryptomus is killed at random moments while signed callbacks and polls settle
   payments, restarted on the same SQLite file, again and again. At every crash point the database is consistent
   (a credit, its status change and its notifications are all there or none is), a callback answered 200 was
   durable, and in the end every paid deposit is credited exactly once and every notification delivered.
2. Gateways failing while a deposit is created (timeout, 5xx, garbage, a hang, an answer without an address): the
   user is told "temporarily unavailable", nothing half-created is shown, and the next Create works.
3. The Bot API answering 429 and 5xx while many notifications go out: delayed, never lost or doubled.
4. A second writer holding the database: short holds are waited out; holds beyond the busy timeout fail cleanly
   (503 to a callback, the generic error to a button) and a retry succeeds; a delivery whose "sent" commit
   fails on a locked database is not sent again.
"""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import re
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

import services.store.sqlite as db_module  # the SQLite engine: its busy timeout
from services.gateways.cryptomus import CryptomusGateway
from services.gateways.smsonline import SMSOnlineGateway
from services.store import DepositStatus
from services.store.db import execute, fetch_all, fetch_value
from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.cryptomus import FakeCryptomus
from tests.fakes.smsonline import FakeSMSOnline
from tests.harness import ADMIN_CHAT_ID, Harness
from tests.test_e2e import ADMIN_CHAT, bot_env, free_port, text_of
from tests.zygote import ForkedBot, Zygote

SEED = 20250611
MERCHANT, PAYMENT_KEY = "fault-merchant", "fault-cryptomus-payment-key"
SMS_USER, SMS_KEY = "fault-operator", "fault-sms-api-key"

PAID_RE = re.compile(r"Payment received for deposit #(\d+)")
ADMIN_PAID_RE = re.compile(r"Deposit #(\d+) paid")
CARD_RE = re.compile(r"Deposit #(\d+)")


# ----------------------------------------------------------------------------------------------- helpers


def sql(path: Path, query: str, params: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    """Read the bot's database directly, as an operator would (a fresh connection each time)."""
    conn = sqlite3.connect(path, timeout=10)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(query, params).fetchall()
    finally:
        conn.close()


def balance_mismatches(path: Path) -> list[tuple[int, int, int]]:
    rows = sql(path, """
        SELECT u.id, u.balance_cents, COALESCE(SUM(l.amount_cents), 0) AS ledger_sum
        FROM users u LEFT JOIN ledger l ON l.user_id = u.id
        GROUP BY u.id HAVING u.balance_cents <> ledger_sum""")
    return [(r[0], r[1], r[2]) for r in rows]


def paid_ids_in(api: FakeBotAPI, chat_id: int, pattern: re.Pattern[str]) -> list[int]:
    """Deposit ids of every message in the chat matching pattern (one entry per message, duplicates kept)."""
    return [int(m.group(1)) for msg in api.sent_to(chat_id) if (m := pattern.search(text_of(msg)))]


async def bounded(condition: Any, timeout: float, what: str, interval: float = 0.1) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"not within {timeout}s: {what}")
        await asyncio.sleep(interval)


# ----------------------------------------------------------------------------------------------- 1. SIGKILL loop


def newest_message_id(api: FakeBotAPI, chat_id: int) -> int:
    return max((mid for (cid, mid) in api.messages if cid == chat_id), default=0)


def fresh_button(api: FakeBotAPI, chat_id: int, label: str, min_id: int, needle: str = "") -> tuple[int, str] | None:
    """(message_id, data) of a button labelled `label` on a bot message newer than min_id (containing needle)."""
    for message in reversed(api.sent_to(chat_id)):
        if message["message_id"] < min_id or needle not in text_of(message):
            continue
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if label in button.get("text", "") and "callback_data" in button:
                    return message["message_id"], button["callback_data"]
    return None


async def tap_fresh(api: FakeBotAPI, user: int, label: str, min_id: int, needle: str = "",
                    timeout: float = 15) -> None:
    message_id, data = await api.wait_for(lambda a: fresh_button(a, user, label, min_id, needle), timeout)
    api.push_callback(user, data, message_id=message_id)


async def create_through_the_conversation(api: FakeBotAPI, user: int, amount: str) -> tuple[int, int]:
    """/topup → USDT → TRON → amount → Skip → Create; returns the deposit id and the card's message id."""
    start = newest_message_id(api, user) + 1
    mark = api.mark()
    api.push_message(user, "/topup")
    await tap_fresh(api, user, "USDT", start)
    await tap_fresh(api, user, "TRON", start)
    await api.wait_for(lambda a: any(m["message_id"] >= start and "How much" in text_of(m)
                                     for m in a.sent_to(user)), timeout=15)
    api.push_message(user, amount)
    await tap_fresh(api, user, "Create", start, needle=f"${amount}")
    photo = await api.wait_for_call("sendPhoto", lambda c: c.params.get("chat_id") == user, timeout=20, since=mark)
    match = CARD_RE.search(photo.params["caption"])
    assert match is not None, photo.params["caption"]
    return int(match.group(1)), photo.result["message_id"]


async def wait_until_listening(bot: ForkedBot, port: int, timeout: float = 30) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
        while True:
            if bot.returncode is not None:
                raise AssertionError(f"the bot exited with {bot.returncode}:\n{bot.log()[-3000:]}")
            try:
                async with http.get(f"http://127.0.0.1:{port}/healthz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if loop.time() > deadline:
                raise TimeoutError(f"the listener did not come up within {timeout}s:\n{bot.log()[-3000:]}")
            await asyncio.sleep(0.02)


def pending_notifications(db_path: Path, deposit_ids: tuple[int, ...] | None = None) -> int:
    """Notifications not yet sent (of these deposits only, when given)."""
    where = f" AND deposit_id IN ({','.join('?' * len(deposit_ids))})" if deposit_ids else ""
    return int(sql(db_path, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'" + where,
                   deposit_ids or ())[0][0])


def crash_point_invariants(db_path: Path) -> dict[int, str]:
    """What must hold whenever the process has just died; returns deposit id -> status."""
    assert balance_mismatches(db_path) == []
    deposits = {r["id"]: r["status"] for r in sql(db_path, "SELECT id, status FROM deposits")}
    credits = Counter(r["deposit_id"] for r in sql(db_path, "SELECT deposit_id FROM ledger WHERE kind = 'deposit'"))
    kinds: dict[int, set[str]] = {}
    for r in sql(db_path, "SELECT deposit_id, kind FROM notifications WHERE deposit_id IS NOT NULL"):
        kinds.setdefault(r["deposit_id"], set()).add(r["kind"])
    for deposit_id, status in deposits.items():
        assert credits[deposit_id] <= 1, f"deposit {deposit_id} credited {credits[deposit_id]} times"
        # The credit, the status change and the notifications commit together, or not at all.
        assert (status == "paid") == (credits[deposit_id] == 1), (deposit_id, status, credits[deposit_id])
        if status == "paid":
            assert {"deposit_paid", "deposit_card", "admin_deposit_paid"} <= kinds.get(deposit_id, set()), \
                (deposit_id, kinds.get(deposit_id))
    return deposits


async def test_sigkill_at_random_moments_loses_and_doubles_no_credit(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    users = [880001, 880002, 880003, 880004, 880005]
    per_user = 2
    rounds = 6
    port = free_port()
    db_path = tmp_path / "bot.sqlite3"
    log_path = tmp_path / "bot.log"
    bots: list[ForkedBot] = []
    # time.monotonic() once each SIGKILLed process is gone (the fake Bot API stamps calls on arrival, same clock): every
    # call the process made arrived before it.
    kills: list[float] = []
    acked: dict[str, float] = {}  # order id -> when a "paid" callback for it was answered 200
    cut_off = 0  # callbacks whose connection died with the process
    answered = asyncio.Event()  # set by the first callback answer of a round
    zygote: Zygote | None = None

    async def start() -> ForkedBot:
        """A fresh `python -m bot`, forked by the zygote only after the previous one is dead: two never share the
        database."""
        assert zygote is not None
        bot = await zygote.start(log_path)
        bots.append(bot)
        return bot

    async def callback(bot: ForkedBot, order_id: str, delay: float, **kw: Any) -> int | None:
        """Send one signed callback; until the listener is up, retry like Cryptomus would; None if the bot died."""
        nonlocal cut_off
        await asyncio.sleep(delay)
        while bot.returncode is None:
            try:
                status, _ = await fake.send_webhook(None, order_id, timeout=5, **kw)
            except aiohttp.ClientConnectorError:
                await asyncio.sleep(0.02)  # not listening yet (or any more)
                continue
            except (aiohttp.ClientError, TimeoutError):
                cut_off += 1
                return None  # the process died while handling it
            answered.set()
            assert status in (200, 503), status  # never a 500, never a refusal of a valid callback
            if status == 200 and not kw:
                acked.setdefault(order_id, time.monotonic())
            return status
        return None

    try:
        async with FakeBotAPI() as api, FakeCryptomus(merchant_id=MERCHANT, payment_key=PAYMENT_KEY) as fake:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="cryptomus",
                          CRYPTOMUS_API_URL=fake.base_url, CRYPTOMUS_MERCHANT_ID=MERCHANT,
                          CRYPTOMUS_API_KEY=PAYMENT_KEY, WEB_HOST="127.0.0.1", WEB_PORT=str(port),
                          PUBLIC_URL=f"http://127.0.0.1:{port}", RECONCILE_INTERVAL_SECONDS="1",
                          MAX_OPEN_DEPOSITS=str(per_user), MAX_DEPOSITS_PER_HOUR="50")
            t0 = time.monotonic()
            zygote = await Zygote.spawn(env, log_path)
            bot = await start()
            await wait_until_listening(bot, port)
            print(f"[{time.monotonic() - t0:.1f}s] first start")

            # Deposits made through the conversation, several users at once.
            amounts = {u: [f"{rng.randint(2, 80)}.{rng.randint(0, 99):02d}" for _ in range(per_user)] for u in users}

            async def user_flow(user: int) -> list[tuple[int, int]]:
                return [await create_through_the_conversation(api, user, amount) for amount in amounts[user]]

            created = await asyncio.wait_for(asyncio.gather(*(user_flow(u) for u in users)), timeout=40)
            cards = [(user, card) for user, made in zip(users, created, strict=True) for _, card in made]
            deposit_ids = sorted(i for made in created for i, _ in made)
            assert len(set(deposit_ids)) == len(users) * per_user
            order_of = {r["id"]: r["order_id"] for r in sql(db_path, "SELECT id, order_id FROM deposits")}
            assert sorted(order_of) == deposit_ids and all(order_of.values())
            orders = [order_of[i] for i in deposit_ids]
            id_of = {o: i for i, o in order_of.items()}
            print(f"[{time.monotonic() - t0:.1f}s] created")

            # Paid at the gateway a few at a time. Each round (re)starts the bot, fires callbacks (new payments,
            # repeats of old ones, non-final statuses) while polling runs too, and SIGKILLs it: either at a random
            # moment (start-up, callbacks, polls, paced deliveries), or in a burst of concurrent callbacks, just
            # after the first of them was answered.
            shuffled = orders[:]
            rng.shuffle(shuffled)
            groups = [shuffled[i::rounds] for i in range(rounds)]
            paid_at_gateway: list[str] = []
            for round_no, group in enumerate(groups):
                if bot.returncode is not None:
                    bot = await start()
                for order_id in group:
                    fake.set_status(order_id, "paid")
                repeats = rng.sample(paid_at_gateway, k=min(2, len(paid_at_gateway)))
                paid_at_gateway += group
                unpaid = [o for o in orders if o not in paid_at_gateway]
                burst = rng.random() < 0.5
                spread, copies = (0.05, 3) if burst else (1.5, 1)
                answered.clear()
                tasks = [asyncio.create_task(callback(bot, o, rng.uniform(0, spread)))
                         for o in (group + repeats) * copies]
                tasks += [asyncio.create_task(callback(bot, o, rng.uniform(0, spread), status="confirm_check"))
                          for o in rng.sample(unpaid, k=min(2, len(unpaid)))]
                for user, card in rng.sample(cards, k=2):  # customers tapping "Check status" meanwhile
                    if (button := fresh_button(api, user, "Check status", card)) and button[0] == card:
                        api.push_callback(user, button[1], message_id=card)
                cut_off_before = cut_off
                group_ids = tuple(id_of[o] for o in group)
                if burst:
                    await asyncio.wait_for(answered.wait(), 30)
                    await asyncio.sleep(rng.uniform(0, 0.03))
                else:
                    # At a random moment while this round's work is under way: once a credit's notifications are
                    # queued, the customer's card edit waits a second behind their message (one per chat per second).
                    def round_busy(ids: tuple[int, ...] = group_ids, running: ForkedBot = bot) -> bool:
                        return bool(pending_notifications(db_path, ids)) or running.returncode is not None

                    await bounded(round_busy, 30, "a credit of this round queued its notifications", interval=0.02)
                    await asyncio.sleep(rng.uniform(0, 0.9))
                await bot.kill()
                kills.append(time.monotonic())
                await asyncio.wait_for(asyncio.gather(*tasks), 15)
                # Each kill interrupted work in progress: a callback cut off, a notification not yet sent, or a
                # payment the gateway reported that is not yet on the ledger. A kill of an idle bot proves nothing.
                unsettled = [o for o in group if sql(db_path, "SELECT COUNT(*) FROM ledger WHERE deposit_id = ?",
                                                     (id_of[o],))[0][0] == 0]
                interrupted = {"cut_off": cut_off - cut_off_before,
                               "unsent": pending_notifications(db_path, group_ids),
                               "unsettled": len(unsettled)}
                assert any(interrupted.values()), (round_no, interrupted)

                statuses = crash_point_invariants(db_path)
                for order_id in acked:  # a 200 means the credit was durable before the answer
                    assert statuses[id_of[order_id]] == "paid", (round_no, order_id)
                assert all(s in ("pending", "paid") for s in statuses.values()), statuses
                print(f"[{time.monotonic() - t0:.1f}s] round {round_no} ({'burst' if burst else 'timer'}): "
                      f"killed {kills[-1] - t0:.1f}s, "
                      f"{sum(s == 'paid' for s in statuses.values())} paid, interrupted {interrupted}")

            # Finally run until quiet; Cryptomus re-sends callbacks nobody answered, and polling runs too.
            bot = await start()
            await asyncio.gather(*(callback(bot, o, rng.uniform(0, 0.5)) for o in orders if o not in acked))

            def quiet() -> bool:
                unpaid = sql(db_path, "SELECT COUNT(*) FROM deposits WHERE status <> 'paid'")[0][0]
                pending = sql(db_path, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'")[0][0]
                return unpaid == 0 and pending == 0

            await bounded(quiet, 40, "every deposit paid and every notification sent")
            print(f"[{time.monotonic() - t0:.1f}s] quiet")
            assert await bot.stop(timeout=10) == 0

        # Exactly once in money.
        crash_point_invariants(db_path)
        rows = sql(db_path, "SELECT id, status, amount_cents, credited_cents, user_id FROM deposits ORDER BY id")
        assert [r["id"] for r in rows] == deposit_ids
        assert all(r["status"] == "paid" and r["credited_cents"] == r["amount_cents"] for r in rows)
        credits = sql(db_path,
                      "SELECT deposit_id, COUNT(*) AS n FROM ledger WHERE kind = 'deposit' GROUP BY deposit_id")
        assert {r["deposit_id"]: r["n"] for r in credits} == {i: 1 for i in deposit_ids}
        assert balance_mismatches(db_path) == []
        for user in users:
            expected = sum(r["amount_cents"] for r in rows if r["user_id"] == user)
            assert sql(db_path, "SELECT balance_cents FROM users WHERE id = ?", (user,))[0][0] == expected
        # A card update replaced by a newer one (a countdown step, then "paid") is neither given up nor lost.
        statuses = Counter(r[0] for r in sql(db_path, "SELECT status FROM notifications WHERE "
                                                      "COALESCE(last_error, '') <> 'superseded by a newer one'"))
        assert set(statuses) == {"sent"}, statuses  # nothing given up, nothing left behind

        # At least once in messages; a second copy only from a crash right after Telegram accepted the first.
        # A message is sent before its outbox row is marked sent, in a separate commit; a process killed between
        # Telegram's answer and that commit sends it again after the restart (at-least-once). Every extra copy must
        # be explained that way: sent shortly before a kill, by a row that was never marked failed or retried.
        def check_copies(chat_ids: list[int], pattern: re.Pattern[str], kind: str) -> list[float]:
            sent: dict[int, list[float]] = {}
            for call in api.calls_of("sendMessage"):
                if call.params.get("chat_id") in chat_ids and (m := pattern.search(text_of(call.result or {}))):
                    sent.setdefault(int(m.group(1)), []).append(call.at)
            assert sorted(sent) == deposit_ids, (sorted(sent), deposit_ids)
            gaps = []
            for deposit_id, times in sent.items():
                for first in times[:-1]:  # every copy but the last must have been cut off by a kill
                    gap = min((k - first for k in kills if k >= first), default=None)
                    assert gap is not None and gap < 1.0, \
                        f"deposit {deposit_id}: {len(times)} copies, not explained by a crash (kills at {kills})"
                    gaps.append(round(gap, 3))
                if len(times) > 1:
                    [row] = sql(db_path, "SELECT attempts, last_error FROM notifications WHERE kind = ? "
                                         "AND deposit_id = ?", (kind, deposit_id))
                    assert (row["attempts"], row["last_error"]) == (1, None), dict(row)  # not a retry
            assert len(gaps) <= len(kills)  # delivery is sequential: one interrupted send per kill at most
            return gaps

        user_dupes = check_copies(users, PAID_RE, "deposit_paid")
        admin_dupes = check_copies([ADMIN_CHAT], ADMIN_PAID_RE, "admin_deposit_paid")
        print(f"SIGKILL loop: {len(deposit_ids)} deposits, {len(kills)} kills, {len(acked)} paid callbacks answered "
              f"200, {cut_off} callbacks cut off by a kill; second copies from a kill between Telegram's answer "
              f"and the outbox commit (seconds before the kill): users {user_dupes}, admin {admin_dupes}")
        for user in users:
            for message in api.sent_to(user):
                if message.get("photo"):
                    assert "Paid" in text_of(message), text_of(message)  # every card followed the status
        log = bots[-1].log()
        assert "Traceback" not in log and PAYMENT_KEY not in log
    finally:
        for bot in bots:
            await bot.kill()
        if zygote is not None:
            await zygote.close()
        if bots:
            print(f"--- bot output ({log_path}) ---\n{bots[-1].log()[-20000:]}")


# ----------------------------------------------------------------------------------------------- 2. gateways failing


USER = 912

# How SMSOnline misbehaves while the deposit is created (FakeSMSOnline.fail_next arguments).
CREATE_FAULTS: dict[str, dict[str, Any]] = {
    # Answers correctly, but only after our timeout: the gateway may have made an order we never heard of.
    "timeout": {"status": None, "delay": 2.0},
    # Accepts the connection and says nothing while we wait (fake.stop() cuts the sleep short).
    "hang": {"status": 502, "delay": 60.0},
    "502": {"status": 502, "body": "<html><body>502 Bad Gateway</body></html>", "content_type": "text/html"},
    "503-json": {"status": 503, "body": '{"ok": false, "errorMessage": "maintenance"}',
                 "content_type": "application/json"},
    "garbage": {"status": 200, "body": "\x00\x1f{{not json at all", "content_type": "application/json"},
    "wrong-envelope": {"status": 200, "body": '{"ok": true, "body": "created!"}', "content_type": "application/json"},
    "no-address": {"status": 200, "content_type": "application/json", "body": (
        '{"ok": true, "body": {"currency": "USDT", "network": "tron", "amountInUSD": "25.00", '
        '"amountInCrypto": "25.00", "expire_at": 4102444800, "order_id": "half-made-order"}}')},
    "zero-amount": {"status": 200, "content_type": "application/json", "body": (
        '{"ok": true, "body": {"to_address": "TQn9Y2khEsLJW1ChVWFMSMeRDow5KcbLSE", "currency": "USDT", '
        '"network": "tron", "amountInUSD": "25.00", "amountInCrypto": "0", "order_id": "zero-amount-order"}}')},
}


@pytest.fixture
async def sms():
    async with FakeSMSOnline(user_id=SMS_USER, api_key=SMS_KEY) as fake:
        yield fake


@pytest.mark.parametrize("fault", list(CREATE_FAULTS))
async def test_a_failing_gateway_creates_nothing_and_the_next_try_works(api: FakeBotAPI, sms: FakeSMSOnline,
                                                                        tmp_path: Path, fault: str) -> None:
    gateway = SMSOnlineGateway(sms.base_url, SMS_USER, SMS_KEY, timeout_seconds=0.5)
    h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway, MAX_DEPOSITS_PER_HOUR="100")
    try:
        await h.send(USER, "/topup")
        await h.tap(USER, "USDT")
        await h.tap(USER, "TRON")
        await h.send(USER, "25")
        assert "Create" in " ".join(h.buttons(h.last(USER)))

        sms.fail_next("/cryptomus/direct/", method="PUT", **CREATE_FAULTS[fault])
        started = time.monotonic()
        await asyncio.wait_for(h.tap(USER, "Create"), 10)
        assert time.monotonic() - started < 5  # our own timeout, not the gateway's silence, decides
        text = h.last_text(USER)
        assert "temporarily unavailable" in text and "Nothing was created" in text, text
        assert "$25.00" in text and any("Create" in b for b in h.buttons(h.last(USER)))  # still at the confirm step
        assert api.calls_of("sendPhoto") == []  # no card, no address, no QR code
        [attempt] = await fetch_all(h.app.db.reader, "SELECT * FROM deposits")
        assert attempt["status"] == "failed" and attempt["order_id"] is None and attempt["address"] is None
        assert await fetch_value(h.app.db.reader, "SELECT COUNT(*) FROM notifications") == 0
        report = await h.app.reconciler.run_once(now=int(time.time()) + 3600)
        assert report.checked == 0  # nothing to poll: no half-made deposit waits for a payment
        await h.send(USER, "/history")
        assert "no deposits yet" in h.last_text(USER)

        # The gateway recovers: the same confirmation creates the deposit.
        await asyncio.wait_for(h.tap(USER, "Create"), 10)
        [photo] = api.calls_of("sendPhoto")
        [made] = await fetch_all(h.app.db.reader, "SELECT * FROM deposits WHERE order_id IS NOT NULL")
        assert made["status"] == DepositStatus.PENDING.value and made["id"] != attempt["id"]
        wallet = sms.deposits[made["order_id"]]
        assert wallet["to_address"] in photo.params["caption"] and wallet["to_address"] == made["address"]
        assert "Waiting for payment" in photo.params["caption"]
        assert await fetch_value(h.app.db.reader, "SELECT COUNT(*) FROM deposits WHERE order_id IN "
                                                  "('half-made-order', 'zero-amount-order')") == 0
    finally:
        await h.close()


# ----------------------------------------------------------------------------------------------- 3. Bot API 429/5xx


async def _due_now(h: Harness) -> None:
    async with h.app.db.transaction() as tx:
        await execute(tx, "UPDATE notifications SET next_attempt_at = 0 WHERE status = 'pending'")


async def test_throttled_and_failing_bot_api_delays_notifications_without_losing_or_doubling(
        api: FakeBotAPI, harness: Harness) -> None:
    rng = random.Random(SEED + 3)
    users = list(range(730001, 730041))
    deposit_of: dict[int, int] = {}
    for user in users:
        await harness.send(user, "/start")
        deposit = await harness.app.topup.create_deposit(
            user_id=user, chat_id=user, coin="USDT", network="TRON", amount_cents=rng.randint(100, 50_000),
            coupon_code=None)
        await harness.app.topup.simulate_payment(user, deposit.id)
        deposit_of[user] = deposit.id
    queued = await fetch_value(harness.app.db.reader, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'")
    assert queued == 2 * len(users)  # the user's message and the admin line

    api.fail_next("sendMessage", status=429, retry_after=1, count=5)
    api.fail_next("sendMessage", status=502, count=5)
    mark = api.mark()

    async def drain() -> int:
        for passes in range(1, 30):
            await harness.deliver()
            if not await fetch_value(harness.app.db.reader,
                                     "SELECT COUNT(*) FROM notifications WHERE status = 'pending'"):
                return passes
            await _due_now(harness)  # skip the backoff wait, as if the time had passed
        raise AssertionError("the outbox never emptied")

    passes = await asyncio.wait_for(drain(), 40)
    assert passes >= 2  # the refused ones were sent on a later pass

    for user in users:
        assert paid_ids_in(api, user, PAID_RE) == [deposit_of[user]]
    admin = paid_ids_in(api, ADMIN_CHAT_ID, ADMIN_PAID_RE)
    assert sorted(admin) == sorted(deposit_of.values())  # one line per deposit, none twice
    rows = await fetch_all(harness.app.db.reader, "SELECT status, attempts, last_error FROM notifications")
    assert {r["status"] for r in rows} == {"sent"}
    assert sum(r["attempts"] for r in rows) == len(rows) + 10  # each refusal cost exactly one more attempt
    assert sum("retry after 1" in (r["last_error"] or "") for r in rows) == 5
    assert sum("TelegramServerError" in (r["last_error"] or "") for r in rows) == 5

    # After each 429 nothing at all was sent before retry_after had passed.
    calls = [c for c in api.calls[mark:] if c.method == "sendMessage"]
    assert sum(c.failed for c in calls) == 10
    for refused, following in itertools.pairwise(calls):
        if refused.failed and refused.status == 429:
            assert following.at - refused.at >= 0.95, (refused.at, following.at)


# ----------------------------------------------------------------------------------------------- 4. database busy


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another writer (a second process, an operator's sqlite3 shell) takes the database's write lock."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5)
    conn.execute("BEGIN IMMEDIATE")
    return conn


def release(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        conn.execute("COMMIT")
    conn.close()


class Shop:
    """The in-process bot on Cryptomus, its listener on a real port, and two customers with a card each."""

    def __init__(self, h: Harness, runner: web.AppRunner, fake: FakeCryptomus) -> None:
        self.h = h
        self.runner = runner
        self.fake = fake
        self.url = f"http://127.0.0.1:{runner.addresses[0][1]}/webhooks/cryptomus"
        self.orders: dict[int, str] = {}

    @classmethod
    async def open(cls, api: FakeBotAPI, tmp_path: Path, fake: FakeCryptomus) -> Shop:
        gateway = CryptomusGateway(fake.base_url, MERCHANT, PAYMENT_KEY, callback_url=None)
        h = await Harness.start(api, tmp_path / "bot.sqlite3", gateway=gateway)
        runner = web.AppRunner(h.app.web_app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return cls(h, runner, fake)

    async def create(self, user: int, amount: str) -> str:
        h = self.h
        await h.send(user, "/topup")
        await h.tap(user, "USDT")
        await h.tap(user, "TRON")
        await h.send(user, amount)
        await h.tap(user, "Create")
        assert "Waiting for payment" in h.last_text(user)
        self.orders[user] = self.fake.last_order_id()
        return self.orders[user]

    async def webhook(self, user: int) -> int:
        status, _ = await self.fake.send_webhook(self.url, self.orders[user], timeout=10)
        return status

    def state(self) -> dict[str, Any]:
        db_path = self.h.app.db.path
        return {
            "deposits": {r["order_id"]: r["status"] for r in sql(db_path, "SELECT order_id, status FROM deposits")},
            "credits": sql(db_path, "SELECT deposit_id FROM ledger WHERE kind = 'deposit' ORDER BY deposit_id"),
            "paid_notes": sql(db_path, "SELECT COUNT(*) FROM notifications WHERE kind = 'deposit_paid'")[0][0],
            "balances": {r["id"]: r["balance_cents"] for r in sql(db_path, "SELECT id, balance_cents FROM users")},
        }

    async def close(self) -> None:
        await self.runner.cleanup()
        await self.h.close()


@pytest.fixture
async def cryptomus():
    async with FakeCryptomus(merchant_id=MERCHANT, payment_key=PAYMENT_KEY) as fake:
        yield fake


ANNA, BORIS, NEWCOMER = 951, 952, 953


async def test_a_short_lock_by_another_writer_is_waited_out(api: FakeBotAPI, cryptomus: FakeCryptomus,
                                                           tmp_path: Path) -> None:
    shop = await Shop.open(api, tmp_path, cryptomus)
    try:
        anna_order = await shop.create(ANNA, "25")
        boris_order = await shop.create(BORIS, "40")
        cryptomus.set_status(anna_order, "paid")
        cryptomus.set_status(boris_order, "paid")

        holder = hold_write_lock(shop.h.app.db.path)
        asyncio.get_running_loop().call_later(0.5, release, holder)
        started = time.monotonic()
        status, _, _ = await asyncio.wait_for(asyncio.gather(
            shop.webhook(ANNA),                   # the gateway's callback settles Anna's payment
            shop.h.tap(BORIS, "Check status"),    # Boris asks, which settles his
            shop.h.send(NEWCOMER, "/start"),      # someone new writes their user row
        ), 10)
        waited = time.monotonic() - started
        assert waited >= 0.4  # they did wait for the other writer...
        assert status == 200  # ...and then succeeded
        assert shop.h.toasts()[-1] == "✅ Paid! Your balance has been credited."
        assert any("Top up your balance" in text for text in shop.h.texts(NEWCOMER))
        state = shop.state()
        assert state["deposits"] == {anna_order: "paid", boris_order: "paid"}
        assert len(state["credits"]) == 2 and state["paid_notes"] == 2
        assert state["balances"][ANNA] == 2500 and state["balances"][BORIS] == 4000
        assert balance_mismatches(shop.h.app.db.path) == []
    finally:
        await shop.close()


async def test_a_lock_beyond_the_busy_timeout_fails_cleanly_and_a_retry_succeeds(
        api: FakeBotAPI, cryptomus: FakeCryptomus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 200)  # read when the Database opens its connections
    shop = await Shop.open(api, tmp_path, cryptomus)
    holder: sqlite3.Connection | None = None
    try:
        anna_order = await shop.create(ANNA, "25")
        boris_order = await shop.create(BORIS, "40")
        cryptomus.set_status(anna_order, "paid")
        cryptomus.set_status(boris_order, "paid")
        before = shop.state()

        holder = hold_write_lock(shop.h.app.db.path)
        started = time.monotonic()
        assert await shop.webhook(ANNA) == 503  # "try again later": Cryptomus retries; never a 500
        mark = api.mark()
        await asyncio.wait_for(shop.h.tap(BORIS, "Check status"), 10)
        [toast] = [c.params for c in api.calls[mark:] if c.method == "answerCallbackQuery"]
        assert "Something went wrong on our side" in toast["text"] and toast.get("show_alert") is True
        await asyncio.wait_for(shop.h.send(NEWCOMER, "/start"), 10)
        assert shop.h.texts(NEWCOMER) == ["⚠️ Something went wrong on our side. Nothing was charged. Please try again."]
        assert time.monotonic() - started < 5  # each gave up after the busy timeout, nobody hung
        assert shop.state() == before  # nothing half-written: no status change, no credit, no notification
        release(holder)
        holder = None

        # The lock is gone: the gateway's retry and the customer's second tap both go through, once.
        assert await shop.webhook(ANNA) == 200
        await shop.h.tap(BORIS, "Check status")
        assert shop.h.toasts()[-1] == "✅ Paid! Your balance has been credited."
        await shop.h.send(NEWCOMER, "/start")
        assert "Top up your balance" in shop.h.last_text(NEWCOMER)
        assert await shop.webhook(ANNA) == 200  # a repeat changes nothing
        state = shop.state()
        assert state["deposits"] == {anna_order: "paid", boris_order: "paid"}
        assert len(state["credits"]) == 2 and state["paid_notes"] == 2
        assert state["balances"][ANNA] == 2500 and state["balances"][BORIS] == 4000
        assert balance_mismatches(shop.h.app.db.path) == []
    finally:
        if holder is not None:
            release(holder)
        await shop.close()


async def lock_while_telegram_answers(h: Harness, api: FakeBotAPI) -> tuple[int, sqlite3.Connection, asyncio.Task[Any]]:
    """A paid deposit's message on its way: the rows are claimed (a write) before anything is sent, and the write lock
    is taken while Telegram is still answering, so it is the "sent" mark after the answer that finds the database
    locked. The deposit's id, the lock's holder and the delivery pass in flight."""
    await h.send(ANNA, "/start")
    deposit = await h.app.topup.create_deposit(user_id=ANNA, chat_id=ANNA, coin="USDT", network="TRON",
                                               amount_cents=1000, coupon_code=None)
    await h.app.topup.simulate_payment(ANNA, deposit.id)
    api.answer_delay = 0.5
    delivering = asyncio.create_task(h.deliver())
    await bounded(lambda: paid_ids_in(api, ANNA, PAID_RE), 10, "the paid message reached Telegram", 0.01)
    holder = hold_write_lock(h.app.db.path)
    api.answer_delay = 0.0
    return deposit.id, holder, delivering


async def test_a_locked_database_after_telegram_accepted_a_message_does_not_send_it_twice(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 200)
    h = await Harness.start(api, tmp_path / "bot.sqlite3")
    holder: sqlite3.Connection | None = None
    try:
        deposit_id, holder, delivering = await lock_while_telegram_answers(h, api)
        with contextlib.suppress(sqlite3.OperationalError):
            await asyncio.wait_for(delivering, 10)  # in the bot, run_forever logs this and tries again later
        assert paid_ids_in(api, ANNA, PAID_RE) == [deposit_id]  # Telegram accepted it before the commit failed
        release(holder)
        holder = None

        for _ in range(3):
            await h.deliver()
            await _due_now(h)
        assert paid_ids_in(api, ANNA, PAID_RE) == [deposit_id]  # still one message
        assert len(paid_ids_in(api, ADMIN_CHAT_ID, ADMIN_PAID_RE)) == 1
    finally:
        if holder is not None:
            release(holder)
        await h.close()


async def test_while_the_database_stays_locked_delivered_messages_are_not_sent_again(
        api: FakeBotAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock, taken while Telegram answers the first message (after the rows were claimed), is held across several
    delivery passes (a long backup, a stuck writer): the rows stay 'pending' in the database, none is sent a second
    time; once the lock goes they are recorded, still sent once."""
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 100)
    h = await Harness.start(api, tmp_path / "bot.sqlite3")
    holder: sqlite3.Connection | None = None
    try:
        deposit_id, holder, delivering = await lock_while_telegram_answers(h, api)
        with contextlib.suppress(sqlite3.OperationalError):
            await asyncio.wait_for(delivering, 10)
        for _ in range(3):  # more passes, the lock still held
            with contextlib.suppress(sqlite3.OperationalError):
                await asyncio.wait_for(h.deliver(), 10)
        pending = await fetch_value(h.app.db.reader, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'")
        assert pending >= 1  # the rows really are still unrecorded while these passes ran
        assert paid_ids_in(api, ANNA, PAID_RE) == [deposit_id]
        assert len(paid_ids_in(api, ADMIN_CHAT_ID, ADMIN_PAID_RE)) <= 1
        release(holder)
        holder = None
        for _ in range(3):
            await h.deliver()
            await _due_now(h)
        assert await fetch_value(h.app.db.reader, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'") == 0
        assert paid_ids_in(api, ANNA, PAID_RE) == [deposit_id]
        assert len(paid_ids_in(api, ADMIN_CHAT_ID, ADMIN_PAID_RE)) == 1
    finally:
        if holder is not None:
            release(holder)
        await h.close()


async def test_a_repeated_event_queues_one_notification(harness: Harness) -> None:
    """The same event reported again (a gateway's retry, a second pass) queues nothing more: the dedupe key."""
    from services import notifications

    await harness.send(ANNA, "/start")
    deposit = await harness.app.topup.create_deposit(user_id=ANNA, chat_id=ANNA, coin="USDT", network="TRON",
                                                     amount_cents=1000, coupon_code=None)
    review = notifications.AdminDepositReview(deposit, "figures disagree")
    ids = []
    for _ in range(3):
        async with harness.app.db.transaction() as tx:
            ids.append(await notifications.queue(tx, review, chat_id=ADMIN_CHAT_ID, deposit_id=deposit.id,
                                                 dedupe_key=f"deposit:{deposit.id}:admin:figures"))
    assert ids[0] is not None and ids[1:] == [None, None]
    assert await fetch_value(harness.app.db.reader, "SELECT COUNT(*) FROM notifications "
                             "WHERE kind = 'admin_deposit_review'") == 1
