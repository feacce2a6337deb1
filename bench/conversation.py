"""Benchmark 2: many users doing the full top-up conversation through the real dispatcher, against an echo bot.

    .venv/bin/python -m bench.conversation [--users 300] [--concurrency 32] [--redis redis://127.0.0.1:6379/15]

The real application (bot/app.py build_application: SQLite file, SQLite FSM storage, middlewares, every router,
sandbox gateway) takes each user through: /start, tap Top up, tap USDT, tap TRON (TRC-20), type 12,50, tap Add
coupon, type the coupon WELCOME10, tap Create deposit, tap Simulate payment: 9 updates a user, each built from the
bot's previous answer like a Telegram client would. The Bot API is an in-process recording session
(bench/common.py): requests are serialised and answers parsed by aiogram as usual, with no network, so the figure is
the bot's own cost.
Users run concurrently (one update at a time per user, as the dispatcher's event isolation allows).

Then exactly the same updates, in the same per-user order and concurrency, go through a bare aiogram Dispatcher
whose handlers echo each message's text and answer each callback query, with the same session.
Targets (issue 13): the real bot at least 0.25x the echo bot's updates/s with its state in the database, 0.35x with
--redis (conversation state and the per-user lock in Redis, under a key prefix of its own, deleted afterwards); aim
0.5x. The ratio counts only if every conversation completed.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import callback_update, header, line, message_update, recording_session

TOKEN = "123456:BENCH-conversation-token"
ADMIN_CHAT_ID = -1001234567890
FIRST_USER = 700_000
REDIS_PREFIX = f"bench-conversation-{os.getpid()}"


async def drop_redis_keys(url: str) -> None:
    from redis.asyncio import Redis

    redis = Redis.from_url(url)
    try:
        keys = [key async for key in redis.scan_iter(match=f"{REDIS_PREFIX}:*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


async def drive_real(users: int, concurrency: int, tmp: Path, profile: str | None,
                     redis_url: str | None = None, warmup: int = 0) -> tuple[float, list[list[dict]], dict[str, Any]]:
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.enums import ParseMode
    from aiogram.types import Update

    from bot.app import build_application
    from bot.config import load_settings
    from bot.heap import freeze_startup_heap
    from services.store import CouponKind, coupons
    from services.store.db import fetch_value

    env = {"BOT_TOKEN": TOKEN, "DATABASE_URL": f"sqlite:///{tmp / 'bot.sqlite3'}",
           "ADMIN_CHAT_ID": str(ADMIN_CHAT_ID), "PAYMENT_GATEWAY": "sandbox", "TELEGRAM_API_URL": "http://127.0.0.1:9"}
    if redis_url:
        env |= {"REDIS_URL": redis_url, "REDIS_KEY_PREFIX": REDIS_PREFIX}
    settings = load_settings(env)
    app = await build_application(settings)
    async with app.db.transaction() as tx:
        await coupons.create(tx, code="WELCOME10", kind=CouponKind.PERCENT, value=10)
    freeze_startup_heap()  # as `python -m bot` does once the application is built
    session = recording_session()
    bot = Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    update_ids = iter(range(1, 10**9))
    message_ids = iter(range(1, 10**9))
    fed: list[list[dict]] = [[] for _ in range(warmup + users)]

    async def feed(index: int, raw: dict[str, Any]) -> None:
        fed[index].append(raw)
        await app.dispatcher.feed_update(bot, Update.model_validate(raw, context={"bot": bot}))

    async def user_flow(index: int) -> None:
        uid = FIRST_USER + index

        async def send(text: str) -> None:
            await feed(index, message_update(next(update_ids), uid, text, next(message_ids)))

        async def tap(label: str) -> None:
            deadline = time.perf_counter() + 20
            while True:  # the deposit card comes from a background task once the gateway answered
                try:
                    message, data = session.button(uid, label)
                    break
                except LookupError:
                    if time.perf_counter() > deadline:
                        raise
                    await asyncio.sleep(0.005)
            await feed(index, callback_update(next(update_ids), uid, data, message))

        await send("/start")
        await tap("Top up")
        await tap("USDT")
        await tap("TRON (TRC-20)")
        await send("12,50")
        await tap("Add coupon")
        await send("WELCOME10")
        await tap("Create deposit")
        await tap("Simulate payment")

    semaphore = asyncio.Semaphore(concurrency)

    async def limited(index: int) -> None:
        async with semaphore:
            await user_flow(index)

    # Warm-up users first, not timed (nor replayed to the echo bot's timed run): aiogram builds its pydantic
    # models on first use, a one-time cost of a process that then runs for days.
    await asyncio.gather(*(limited(i) for i in range(warmup)))
    profiler = None
    if profile:
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    try:
        started, cpu = time.perf_counter(), time.process_time()
        outcomes = await asyncio.gather(*(limited(i) for i in range(warmup, warmup + users)), return_exceptions=True)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(profile)
        checks = {
            "paid deposits": int(await fetch_value(app.db.reader,
                                                   "SELECT COUNT(*) FROM deposits WHERE status = 'paid'")) - warmup,
            "coupon bonuses": int(await fetch_value(app.db.reader,
                                                    "SELECT COUNT(*) FROM ledger WHERE kind = 'bonus'")) - warmup,
            "Bot API calls": session.calls,
            "cpu": cpu,
            "failed conversations": len(failures),
            "first failure": repr(failures[0])[:600] if failures else None,
            "calls by method": dict(sorted(session.by_method.items())),
        }
    finally:
        await bot.session.close()
        await app.close()
    return elapsed, fed, checks


async def drive_echo(fed: list[list[dict]], concurrency: int, warmup: int = 0) -> tuple[float, int, float]:
    from aiogram import Bot, Dispatcher
    from aiogram.client.default import DefaultBotProperties
    from aiogram.enums import ParseMode
    from aiogram.types import CallbackQuery, Message, Update

    dispatcher = Dispatcher()

    @dispatcher.message()
    async def echo(message: Message) -> None:
        await message.answer(message.text or "?")

    @dispatcher.callback_query()
    async def answer(cb: CallbackQuery) -> None:
        await cb.answer()

    session = recording_session()
    bot = Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    semaphore = asyncio.Semaphore(concurrency)

    async def replay(updates: list[dict]) -> None:
        async with semaphore:
            for raw in updates:
                await dispatcher.feed_update(bot, Update.model_validate(raw, context={"bot": bot}))

    await asyncio.gather(*(replay(u) for u in fed[:warmup]))
    calls_before = session.calls
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(replay(u) for u in fed[warmup:]))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await bot.session.close()
    return elapsed, session.calls - calls_before, cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=32, help="users in the conversation at once")
    parser.add_argument("--profile", metavar="FILE", help="diagnosis: cProfile the real bot's run into FILE")
    parser.add_argument("--warmup", type=int, default=8, help="users taken through first, not timed (default 8)")
    parser.add_argument("--redis", metavar="URL", help="conversation state and the per-user lock in this Redis "
                                                       "(e.g. redis://127.0.0.1:6379/15), as with REDIS_URL")
    args = parser.parse_args()
    header(f"conversation: {args.users} users x 9 updates, {args.concurrency} at once, recording Bot API session")
    tmp = Path(tempfile.mkdtemp(prefix="bench-conversation-"))
    try:
        real_elapsed, fed, checks = asyncio.run(drive_real(args.users, args.concurrency, tmp, args.profile,
                                                           args.redis, args.warmup))
        echo_elapsed, echo_calls, echo_cpu = asyncio.run(drive_echo(fed, args.concurrency, args.warmup))
        fed = fed[args.warmup:]
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.redis:
            asyncio.run(drop_redis_keys(args.redis))
    updates = sum(len(u) for u in fed)
    real_rate, echo_rate = updates / real_elapsed, updates / echo_elapsed
    state = "Redis state and lock" if args.redis else "state in the database"
    print(f"real bot (build_application, SQLite file, {state}, sandbox gateway):")
    print(line("updates / elapsed", f"{updates} / {real_elapsed:.2f} s (CPU {checks['cpu']:.2f} s, both threads)"))
    print(line("checks", f"paid deposits {checks['paid deposits']} of {args.users}, "
               f"coupon bonuses {checks['coupon bonuses']}, Bot API calls {checks['Bot API calls']}"))
    print(line("Bot API calls by method", str(checks["calls by method"])))
    if checks["failed conversations"]:
        print(line("FAILED conversations", f"{checks['failed conversations']}; first: {checks['first failure']}"))
        print("  (a tap judged against an FSM state older than the user's previous step: the shared reader "
              "connection's WAL snapshot; see bench/README.md)")
    print(line("updates/s", f"{real_rate:,.0f}{' (under cProfile)' if args.profile else ''}"))
    print(line("per conversation (9 updates)", f"{real_elapsed / args.users * 1000 * args.concurrency:.0f} ms "
               f"wall at this concurrency"))
    print("bare aiogram echo bot, same updates, same session:")
    print(line("updates / elapsed", f"{updates} / {echo_elapsed:.2f} s (CPU {echo_cpu:.2f} s; {echo_calls} Bot API "
                                    "calls)"))
    print(line("updates/s", f"{echo_rate:,.0f}"))
    target = 0.35 if args.redis else 0.25
    complete = not checks["failed conversations"] and checks["paid deposits"] == args.users
    ratio = real_rate / echo_rate
    print(line("ratio real : echo", f"{ratio:.3f}" + ("" if complete else " (does not count: not every "
                                                                         "conversation completed)"),
               f">= {target} (aim 0.5)", complete and ratio >= target))
    return 0


if __name__ == "__main__":
    sys.exit(main())
