"""Many instances share the work without doing any of it twice: notification leases, poll leases, one leader.

The lease tests run on both engines (`db`); the concurrent ones run several `Database` objects, each with its own
connections, on one PostgreSQL schema, as several instances would.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import asyncpg
import pytest

from bot.leader import LEADER_LOCK, Leadership
from services.gateways.base import PaymentUpdate
from services.gateways.sandbox import SandboxGateway
from services.reconciler import CHECK_LEASE_SECONDS, Reconciler
from services.settlement import Settler
from services.store import Database, now_ts
from services.store import deposits, outbox, users
from services.store.db import execute
from tests.fakes.bot_api import FakeBotAPI
from tests.test_e2e import BotProcess, bot_env, run_bot_expecting_exit


async def queue(db: Database, count: int) -> list[int]:
    async with db.transaction() as tx:
        ids = [await outbox.enqueue(tx, kind="deposit_paid", chat_id=1000 + n, dedupe_key=f"lease-test:{n}",
                                    payload={}) for n in range(count)]
    return [i for i in ids if i is not None]


async def lease(db: Database, owner: str, now: int, limit: int = 50) -> list[int]:
    async with db.transaction() as tx:
        return [n.id for n in await outbox.claim(tx, owner=owner, now=now, lease_seconds=10, limit=limit)]


async def test_a_leased_notification_goes_to_no_other_sender_until_its_lease_ends(db: Database) -> None:
    ids = await queue(db, 3)
    now = now_ts()
    assert await lease(db, "a", now, limit=2) == ids[:2]
    assert await lease(db, "b", now) == ids[2:]  # a's rows are not offered to b while a's lease runs
    assert await lease(db, "a", now + 1) == ids[:2]  # a may lease its own rows again at once
    # a died: when its lease ends its rows come back, to whoever sends now.
    assert await lease(db, "b", now + 11) == ids
    async with db.transaction() as tx:
        await outbox.mark_sent(tx, ids[0])
    assert await lease(db, "c", now + 30) == ids[1:]  # a row that was sent is never leased again


async def test_a_retried_notification_waits_for_its_time_not_for_its_lease(db: Database) -> None:
    [row] = await queue(db, 1)
    now = now_ts()
    assert await lease(db, "a", now) == [row]
    async with db.transaction() as tx:
        await outbox.retry_later(tx, row, at=now + 2, error="429")
    assert await lease(db, "b", now + 1) == []
    assert await lease(db, "b", now + 2) == [row]


@pytest.fixture
async def instances(postgres_url: str) -> AsyncIterator[list[Database]]:
    """Three instances' stores on one PostgreSQL schema, each with connections of its own."""
    stores = [Database(postgres_url) for _ in range(3)]
    for store in stores:
        await store.connect()
    yield stores
    for store in stores:
        await store.close()


async def test_senders_on_many_connections_lease_every_row_exactly_once(instances: list[Database]) -> None:
    """Three instances lease concurrently from one outbox: SKIP LOCKED hands each row to one of them."""
    ids = await queue(instances[0], 300)
    taken: list[list[int]] = [[], [], []]

    async def sender(n: int) -> None:
        while batch := await lease(instances[n], f"sender-{n}", now_ts(), limit=7):
            taken[n].extend(batch)
            async with instances[n].transaction() as tx:
                for row in batch:
                    await outbox.mark_sent(tx, row)

    await asyncio.gather(*(sender(n) for n in range(3)))
    everything = Counter(row for batch in taken for row in batch)
    assert set(everything) == set(ids) and max(everything.values()) == 1
    assert all(taken), [len(t) for t in taken]  # the work really was shared


class CountingSandbox(SandboxGateway):
    """The sandbox gateway, counting its polls."""

    def __init__(self) -> None:
        super().__init__()
        self.polls: Counter[str] = Counter()

    async def fetch_payment(self, order_id: str) -> PaymentUpdate:
        self.polls[order_id] += 1
        await asyncio.sleep(0.01)  # a gateway's round trip, so the three pollers overlap
        return await super().fetch_payment(order_id)


async def due_deposits(db: Database, count: int) -> list[str]:
    now = now_ts()
    orders = []
    async with db.transaction() as tx:
        await users.upsert(tx, 5151, None, "Lease", "en")
        for _ in range(count):
            deposit_id = await deposits.reserve(tx, user_id=5151, chat_id=5151, gateway="sandbox", coin="USDT",
                                                network="TRON", amount_cents=500, coupon_id=None,
                                                gateway_coupon=None)
            orders.append(f"sandbox-{deposit_id}")
            await deposits.mark_created(tx, deposit_id, order_id=orders[-1], address="T-lease", pay_amount=Decimal(5),
                                        pay_currency="USDT", expires_at=now + 3600, payment_url=None,
                                        quoted_cents=500, first_check_at=now - 1)
    return orders


async def test_instances_polling_at_once_poll_each_due_deposit_once(instances: list[Database]) -> None:
    orders = await due_deposits(instances[0], 60)
    gateway = CountingSandbox()
    reconcilers = [Reconciler(db, gateway, Settler(db, admin_chat_id=None), interval_seconds=60)
                   for db in instances]
    reports = await asyncio.gather(*(r.run_once() for r in reconcilers))
    assert set(gateway.polls) == set(orders) and set(gateway.polls.values()) == {1}
    assert sum(r.checked for r in reports) == 60
    # A poller that died leaves its deposits leased; they come back when the lease ends.
    async with instances[0].transaction() as tx:
        await execute(tx, "UPDATE deposits SET next_check_at = ?", (now_ts() - 1,))
        taken = await deposits.lease_due_for_check(tx, now_ts(), lease_seconds=CHECK_LEASE_SECONDS)
    assert len(taken) == 60
    assert await reconcilers[1].run_once() == type(reports[0])()  # nothing due: all leased to the "dead" one
    report = await reconcilers[1].run_once(now=now_ts() + CHECK_LEASE_SECONDS)
    assert report.checked == 60


async def test_one_leader_at_a_time_and_the_next_takes_over_when_it_dies(postgres_url: str,
                                                                          instances: list[Database]) -> None:
    elected: list[tuple[int, float]] = []

    def leadership(n: int) -> Leadership:
        async def chores() -> None:
            elected.append((n, time.monotonic()))
        return Leadership(instances[n], on_elected=chores, duties={})

    leaders = [leadership(n) for n in range(3)]
    tasks = [asyncio.create_task(leader.run_forever()) for leader in leaders]
    admin = await asyncpg.connect(postgres_url.split("?")[0])
    try:
        await asyncio.wait_for(asyncio.wait([asyncio.create_task(leader.leading.wait()) for leader in leaders],
                                            return_when=asyncio.FIRST_COMPLETED), 10)
        await asyncio.sleep(0.5)
        assert [leader.is_leader for leader in leaders].count(True) == 1 and len(elected) == 1
        first = elected[0][0]
        # The leader's process dies: its lock connection ends (here: the server cuts it, as after a kill -9).
        died = time.monotonic()
        schema = postgres_url.split("search_path=")[1].split("&")[0]
        cut = await admin.fetchval("""
            SELECT COUNT(pg_terminate_backend(pid)) FROM pg_locks
            WHERE locktype = 'advisory' AND granted AND objsubid = 1
              AND ((classid::bigint << 32) | objid::bigint) = hashtextextended($1, 0)""", f"{schema}:{LEADER_LOCK}")
        assert cut == 1
        tasks[first].cancel()
        others = [asyncio.create_task(leader.leading.wait()) for i, leader in enumerate(leaders) if i != first]
        await asyncio.wait_for(asyncio.wait(others, return_when=asyncio.FIRST_COMPLETED), 10)
        assert len(elected) == 2 and elected[1][0] != first
        assert elected[1][1] - died < 1.0, elected[1][1] - died
        await asyncio.sleep(0.3)
        assert [leader.is_leader for i, leader in enumerate(leaders) if i != first].count(True) == 1
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await admin.close()


async def test_on_sqlite_the_one_process_always_leads(tmp_path: Path) -> None:
    db = Database(tmp_path / "bot.sqlite3")
    await db.connect()
    ran = asyncio.Event()

    async def chores() -> None:
        ran.set()

    leader = Leadership(db, on_elected=chores, duties={})
    task = asyncio.create_task(leader.run_forever())
    try:
        await asyncio.wait_for(ran.wait(), 5)
        await asyncio.sleep(0.2)
        assert leader.is_leader  # and stays so: SQLite's lock is never lost
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await db.close()


# ----------------------------------------------------------------------------------------------- long polling


async def test_polling_on_postgres_without_redis_works_as_one_instance(
        api: FakeBotAPI, tmp_path: Path, postgres_url: str) -> None:
    env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, DATABASE_URL=postgres_url, PAYMENT_GATEWAY="sandbox")
    bot = await BotProcess.start(env, tmp_path / "bot.log")
    try:
        await api.wait_for(lambda a: a.calls_of("getUpdates"), timeout=30)
        api.push_message(4343, "/start")
        await api.wait_for(lambda a: any("Hi, Test!" in (m.get("text") or "") for m in a.sent_to(4343)), timeout=15)
        assert await bot.stop() == 0
    finally:
        await bot.kill()
        print(bot.log())


async def test_polling_never_switches_off_instances_on_a_webhook(
        api: FakeBotAPI, tmp_path: Path, postgres_url: str) -> None:
    """One instance started without TELEGRAM_WEBHOOK beside a webhook cluster refuses, and deletes nothing."""
    api.webhook_url = "https://bot.example.com/telegram/webhook"
    env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, DATABASE_URL=postgres_url, PAYMENT_GATEWAY="sandbox")
    result = await asyncio.to_thread(run_bot_expecting_exit, env)
    print(result.stdout, result.stderr)
    assert result.returncode == 2 and "TELEGRAM_WEBHOOK=true" in result.stderr
    assert len(result.stderr.strip().splitlines()[-1:]) == 1 and "Traceback" not in result.stderr
    assert api.calls_of("deleteWebhook") == [] and api.calls_of("getUpdates") == []
    assert api.webhook_url == "https://bot.example.com/telegram/webhook"


async def test_a_second_polling_instance_on_one_database_refuses(
        api: FakeBotAPI, tmp_path: Path, postgres_url: str) -> None:
    db = Database(postgres_url)
    await db.connect()
    try:
        async with db.session_lock(LEADER_LOCK) as lock:  # the first instance, polling already
            assert lock.held
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, DATABASE_URL=postgres_url,
                          PAYMENT_GATEWAY="sandbox")
            result = await asyncio.to_thread(run_bot_expecting_exit, env)
        print(result.stdout, result.stderr)
        assert result.returncode == 2 and "another instance" in result.stderr and "Traceback" not in result.stderr
        assert api.calls_of("getUpdates") == []
    finally:
        await db.close()


async def test_a_second_webhook_instance_without_redis_refuses(
        api: FakeBotAPI, tmp_path: Path, postgres_url: str) -> None:
    """Without Redis the conversations live in the process: a second instance would split them, so it refuses."""
    db = Database(postgres_url)
    await db.connect()
    try:
        async with db.session_lock(LEADER_LOCK) as lock:  # the first instance
            assert lock.held
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, DATABASE_URL=postgres_url,
                          PAYMENT_GATEWAY="sandbox", TELEGRAM_WEBHOOK="true", PUBLIC_URL="https://bot.example.com")
            result = await asyncio.to_thread(run_bot_expecting_exit, env)
        print(result.stdout, result.stderr)
        assert result.returncode == 2 and "REDIS_URL" in result.stderr and "Traceback" not in result.stderr
        assert api.calls_of("setWebhook") == []
    finally:
        await db.close()
