"""REDIS_URL: the conversation and the per-user lock shared by instances, finished updates never handled twice.

Two `Application`s on one database and one Redis prefix stand for two instances behind a load balancer; the real
aiogram dispatcher, the fake Bot API and the real Redis of this machine (the test skips without it by hand, and
fails under CI=true).
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
from aiogram.filters import Command
from aiogram.fsm.storage.base import StorageKey
from aiohttp import web
from redis.asyncio import Redis

from bot.app import attach_telegram_webhook
from bot.redis_state import UPDATE_LOCK_SECONDS, eviction_warning
from bot.web import TELEGRAM_WEBHOOK_PATH
from services.store.db import fetch_value
from tests.conftest import TEST_REDIS_URL
from tests.fakes.bot_api import FakeBotAPI, as_update, message_update
from tests.harness import Harness
from tests.test_e2e import bot_env, free_port, run_bot_expecting_exit

USER = 4242


async def two_instances(api: FakeBotAPI, tmp_path: Path, prefix: str, **env: str) -> tuple[Harness, Harness]:
    settings = dict(REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=prefix, **env)
    first = await Harness.start(api, tmp_path / "bot.sqlite3", **settings)
    second = await Harness.start(api, tmp_path / "bot.sqlite3", **settings)
    return first, second


async def test_a_conversation_goes_on_whichever_instance_gets_the_next_update(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    a, b = await two_instances(api, tmp_path, redis_prefix)
    try:
        await a.send(USER, "/topup")
        await b.tap(USER, "USDT")
        await a.tap(USER, "TRON")
        await b.send(USER, "12,50")  # typed text is understood only in the amount step, which `a` entered
        assert "Amount: $12.50" in b.last_text(USER)
        assert "Please check your top-up" in a.last_text(USER)
        # The state is in Redis, under the configured prefix, and not in the database.
        assert await fetch_value(a.app.db.reader, "SELECT COUNT(*) FROM fsm") == 0
        redis = Redis.from_url(TEST_REDIS_URL)
        keys = [key.decode() async for key in redis.scan_iter(match=f"{redis_prefix}:*")]
        ttl = await redis.ttl(next(k for k in keys if k.endswith(":state")))
        await redis.aclose()
        assert any(f":{USER}:" in k and k.endswith(":state") for k in keys), keys
        assert 0 < ttl <= 7 * 24 * 3600  # an abandoned conversation does not stay in Redis forever
    finally:
        await a.close()
        await b.close()


async def test_an_update_telegram_sends_twice_is_handled_once_across_instances(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    a, b = await two_instances(api, tmp_path, redis_prefix)
    try:
        update = as_update(message_update(USER, "/start"), update_id=777)
        # The same update at once on both instances (a retry racing the original), then once more later.
        await asyncio.gather(a.app.dispatcher.feed_update(a.bot, update), b.app.dispatcher.feed_update(b.bot, update))
        await a.app.dispatcher.feed_update(a.bot, update)
        greetings = [m for m in api.sent_to(USER) if "Hi, Test!" in (m.get("text") or "")]
        assert len(greetings) == 1
        # A different update from the same user is of course handled.
        await b.app.dispatcher.feed_update(b.bot, as_update(message_update(USER, "/start"), update_id=778))
        assert len([m for m in api.sent_to(USER) if "Hi, Test!" in (m.get("text") or "")]) == 2
    finally:
        await a.close()
        await b.close()


async def test_one_user_s_updates_wait_for_each_other_across_instances(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    """While one instance holds a user's lock, the other waits instead of running that user's update alongside."""
    a, b = await two_instances(api, tmp_path, redis_prefix)
    try:
        assert a.app.redis is not None
        key = StorageKey(bot_id=a.bot.id, chat_id=USER, user_id=USER)
        async with a.app.redis.isolation.lock(key):
            held = await a.app.redis.redis.pttl(a.app.redis.storage.key_builder.build(key, "lock"))
            assert 0 < held <= UPDATE_LOCK_SECONDS * 1000  # expires: a killed instance can't strand the user
            other = asyncio.create_task(b.send(USER, "/start"))
            await asyncio.sleep(0.5)
            assert not other.done() and api.sent_to(USER) == []
        await asyncio.wait_for(other, 10)
        assert any("Hi, Test!" in (m.get("text") or "") for m in api.sent_to(USER))
    finally:
        await a.close()
        await b.close()


async def test_telegram_gets_its_answer_only_after_the_update_was_handled(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    """handle_in_background=False: when the 200 arrives, the reply is already sent (a crash before it = a retry)."""
    h = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix,
                            TELEGRAM_WEBHOOK="true", PUBLIC_URL="https://bot.example.com",
                            TELEGRAM_WEBHOOK_SECRET="hook-secret")
    port = free_port()
    runner = None
    try:
        await attach_telegram_webhook(h.app, h.bot)
        runner = web.AppRunner(h.app.web_app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        update = {"update_id": 9001, **message_update(USER, "/start")}
        url = f"http://127.0.0.1:{port}{TELEGRAM_WEBHOOK_PATH}"
        async with aiohttp.ClientSession(headers={"X-Telegram-Bot-Api-Secret-Token": "hook-secret"}) as http:
            async with http.post(url, json=update) as response:
                assert response.status == 200
                assert any("Hi, Test!" in (m.get("text") or "") for m in api.sent_to(USER))
            async with http.post(url, json=update) as response:  # Telegram's retry of an update already done
                assert response.status == 200
        assert len([m for m in api.sent_to(USER) if "Hi, Test!" in (m.get("text") or "")]) == 1
    finally:
        if runner is not None:
            await runner.cleanup()
        await h.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_healthz_fails_while_redis_is_down(api: FakeBotAPI, tmp_path: Path) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=f"redis://127.0.0.1:{closed_port()}/0")
    port = free_port()
    runner = web.AppRunner(h.app.web_app)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
            body = await response.json()
        assert response.status == 503 and body["ok"] is False and body["redis"] is False and body["database"] is True
    finally:
        await runner.cleanup()
        await h.close()


async def test_healthz_reports_redis_when_it_is_up(api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    port = free_port()
    runner = web.AppRunner(h.app.web_app)
    try:
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/healthz") as response:
            body = await response.json()
        assert response.status == 200 and body["ok"] is True and body["redis"] is True
    finally:
        await runner.cleanup()
        await h.close()


async def test_a_bot_whose_redis_is_unreachable_stops_with_one_line(api: FakeBotAPI, tmp_path: Path) -> None:
    """No quiet fall-back to memory: an instance that can't share state refuses to start."""
    env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="sandbox",
                  REDIS_URL=f"redis://:pw-secret@127.0.0.1:{closed_port()}/3")
    result = await asyncio.to_thread(run_bot_expecting_exit, env)
    print(result.stdout, result.stderr)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Redis" in lines[0] and "REDIS_URL" in lines[0], result.stderr
    assert "pw-secret" not in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "bot.sqlite3").exists()  # refused before touching anything


async def test_an_evicting_redis_is_named_at_start_and_noeviction_is_not(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    h = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    try:
        assert h.app.redis is not None
        policy = await h.app.redis.eviction_policy()
        assert policy is not None  # read from this machine's Redis (noeviction, as .ci/run and the README set it)
        assert eviction_warning("noeviction") is None
        warning = eviction_warning("allkeys-lru")
        assert warning is not None and "allkeys-lru" in warning and "noeviction" in warning
        assert eviction_warning("volatile-ttl") is not None  # the lock has a TTL too: evictable
    finally:
        await h.close()


def before_each_multi(redis: Redis, before: Callable[[Any], Awaitable[None]]) -> None:
    """Every pipeline this client makes from now on awaits `before(pipe)` just before it is sent (until
    `del redis.pipeline`)."""
    make_pipeline = redis.pipeline

    def pipeline(*args: Any, **kwargs: Any) -> Any:
        pipe = make_pipeline(*args, **kwargs)
        execute = pipe.execute

        async def run(*a: Any, **kw: Any) -> Any:
            await before(pipe)
            return await execute(*a, **kw)

        pipe.execute = run
        return pipe

    redis.pipeline = pipeline  # type: ignore[method-assign]


async def test_a_step_reads_its_conversation_once_and_writes_it_once_with_its_finished_mark(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    """A step costs Redis five round trips whatever the handlers do: take the lock, read state and data (one MGET),
    check the finished mark, write what changed together with the new mark (one MULTI), let go of the lock."""
    a = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    try:
        assert a.app.redis is not None
        redis = a.app.redis.redis
        await a.send(USER, "/topup")
        await a.tap(USER, "USDT")
        commands: list[str] = []
        transactions: list[list[str]] = []
        send_command = redis.execute_command

        async def counted(*args: Any, **kwargs: Any) -> Any:
            commands.append(str(args[0]).upper())
            return await send_command(*args, **kwargs)

        async def record(pipe: Any) -> None:
            transactions.append([str(c[0][0]).upper() for c in pipe.command_stack])

        redis.execute_command = counted  # type: ignore[method-assign]
        before_each_multi(redis, record)
        await a.tap(USER, "TRON")  # reads the state and data several times, changes both
        assert "How much" in a.last_text(USER)
        assert commands == ["SET", "MGET", "EXISTS", "EVALSHA"], commands  # lock, read, finished?, unlock
        assert transactions == [["SET", "SET", "SET"]], transactions  # state, data, the finished mark
        # What it wrote is what the next step (on any instance) reads.
        key = StorageKey(bot_id=a.bot.id, chat_id=USER, user_id=USER)
        assert await a.app.redis.storage.get_state(key) == "TopupFlow:amount"
        assert (await a.app.redis.storage.get_data(key))["network"] == "TRON"
    finally:
        await a.close()


async def test_a_failed_step_still_writes_what_it_changed_but_is_not_marked_finished(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    """As when every change went to Redis at once: a handler that fails half-way leaves its changes, and Telegram's
    retry of the update is handled again (no finished mark)."""
    a = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    try:
        assert a.app.redis is not None
        key = StorageKey(bot_id=a.bot.id, chat_id=USER, user_id=USER)

        async def failing(message: Any, state: Any) -> None:
            await state.set_state("Broken:half-way")
            await state.update_data(written="yes")
            raise RuntimeError("the handler failed after changing the state")

        a.app.dispatcher.message.register(failing, Command("fail"))
        update = as_update(message_update(USER, "/fail"), update_id=9901)
        with contextlib.suppress(RuntimeError):
            await a.app.dispatcher.feed_update(a.bot, update)
        assert await a.app.redis.storage.get_state(key) == "Broken:half-way"
        assert await a.app.redis.storage.get_data(key) == {"written": "yes"}
        assert not await a.app.redis.redis.exists(a.app.redis.finished_updates.key(a.bot.id, 9901))
    finally:
        await a.close()


async def test_a_task_the_step_started_sees_the_step_s_state_even_while_it_is_being_written(
        api: FakeBotAPI, tmp_path: Path, redis_prefix: str) -> None:
    """The deposit's creation runs in a task the step starts, and reads the flow's state when the gateway answers,
    which can be while the step's MULTI is still on its way to Redis. It must see the step's state then (not the
    one before it), and what it writes meanwhile must not be lost."""
    a = await Harness.start(api, tmp_path / "bot.sqlite3", REDIS_URL=TEST_REDIS_URL, REDIS_KEY_PREFIX=redis_prefix)
    try:
        assert a.app.redis is not None
        redis = a.app.redis.redis
        key = StorageKey(bot_id=a.bot.id, chat_id=USER, user_id=USER)
        writing = asyncio.Event()
        seen: list[str | None] = []

        async def background(state: Any) -> None:
            await writing.wait()  # the step's write has begun
            seen.append(await state.get_state())
            await state.update_data(created=17)

        async def step(message: Any, state: Any) -> None:
            await state.set_state("Flow:creating")
            asyncio.get_running_loop().create_task(background(state))

        async def stall(pipe: Any) -> None:
            writing.set()
            for _ in range(5):  # let the task run while the MULTI is "on the wire"
                await asyncio.sleep(0)

        before_each_multi(redis, stall)
        a.app.dispatcher.message.register(step, Command("step"))
        await a.app.dispatcher.feed_update(a.bot, as_update(message_update(USER, "/step"), update_id=9902))
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.01)
        del redis.pipeline
        assert seen == ["Flow:creating"]
        assert await a.app.redis.storage.get_state(key) == "Flow:creating"
        assert await a.app.redis.storage.get_data(key) == {"created": 17}
    finally:
        await a.close()
