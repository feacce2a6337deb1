"""Benchmark 3: notifications through the outbox and the real DeliveryWorker to a rate-limited fake Bot API.

    .venv/bin/python -m bench.notifications            # 1,000 notifications (about 45 s), prints the projection
    .venv/bin/python -m bench.notifications --full     # the issue's 10,000 (about 7 minutes)

The fake Bot API (tests/fakes/bot_api.py, over HTTP on 127.0.0.1) answers 429 to any send beyond 30 in a sliding
second. On top, per 1,000 notifications it injects one 429 (retry_after=1) and two 5xx (500, 502). The worker runs
at its default 25 messages/s overall and one per second per chat; the notifications go to 1,000 chats in turn, so
the per-chat limit never binds. Each notification's text carries a tag, so lost (never arrived) and duplicated
(arrived more than once) are counted at the fake. Targets (issue): achieved rate within 5% of the configured one,
none lost, none duplicated.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import re
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench.common import header, line

CHATS = 1000
FAKE_LIMIT = 30
TAG = re.compile(r"bench#(\d+)")


async def run(count: int, rate: float, tmp: Path) -> None:
    import logging

    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer

    from bot.delivery import DeliveryWorker
    from handlers.i18n import Locales
    from handlers.ui.notifications import NotificationRenderer
    from services.notifications import BalanceAdjusted, queue
    from services.store import Database, users
    from services.store.db import fetch_all
    from tests.fakes.bot_api import FakeBotAPI

    logging.basicConfig(level=logging.INFO, filename=str(tmp / "delivery.log"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    db = Database(tmp / "bot.sqlite3")
    await db.connect()
    async with db.transaction() as tx:
        for uid in range(1, CHATS + 1):
            await users.upsert(tx, 20_000 + uid, f"user{uid}", f"User {uid}", "en")
        for i in range(count):
            uid = 20_000 + 1 + i % CHATS
            await queue(tx, BalanceAdjusted(await users.get(tx, uid), 100, f"bench#{i}", 100), chat_id=uid,
                        user_id=uid, dedupe_key=f"bench:{i}")
    async with FakeBotAPI(rate_limit_per_second=FAKE_LIMIT) as api:
        bot = Bot("123456:BENCH-token", session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        worker = DeliveryWorker(bot, db, NotificationRenderer(Locales("en"), sandbox=True), global_rate_per_second=rate,
                                per_chat_interval_seconds=1.0)
        injected: Counter[int] = Counter()

        async def inject_faults() -> None:
            # Per 1,000 successful sends: a 429 at 250, a 500 at 500 and a 502 at 750.
            plan = {250: (429, 1), 500: (500, None), 750: (502, None)}
            done: set[int] = set()
            while True:
                sent = sum(1 for c in api.calls if c.method == "sendMessage" and not c.failed)
                for base in range(0, sent + 1, 1000):
                    for offset, (status, retry_after) in plan.items():
                        mark = base + offset
                        if mark <= sent and mark not in done and mark < count:
                            done.add(mark)
                            api.fail_next("sendMessage", status=status, retry_after=retry_after)
                            injected[status] += 1
                await asyncio.sleep(0.05)

        expected_seconds = count / rate
        deadline = time.monotonic() + expected_seconds * 1.5 + 60
        started = time.monotonic()
        tasks = [asyncio.create_task(worker.run_forever()), asyncio.create_task(inject_faults())]
        try:
            last_report = started
            while time.monotonic() < deadline:
                left = await fetch_all(db.reader, "SELECT COUNT(*) FROM notifications WHERE status = 'pending'")
                if left[0][0] == 0:
                    break
                if time.monotonic() - last_report >= 15:
                    last_report = time.monotonic()
                    print(f"  ... {count - left[0][0]} of {count} delivered after {last_report - started:.0f}s",
                          flush=True)
                await asyncio.sleep(0.5)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await bot.session.close()

        sends = [c for c in api.calls if c.method == "sendMessage"]
        ok = [c for c in sends if not c.failed]
        refused_429 = sum(1 for c in sends if c.failed and c.status == 429)
        refused_5xx = sum(1 for c in sends if c.failed and c.status >= 500)
        arrived = Counter(int(m.group(1)) for c in ok if (m := TAG.search(str(c.params.get("text", "")))))
        lost = [i for i in range(count) if arrived[i] == 0]
        duplicated = [i for i, n in arrived.items() if n > 1]
        rows = await fetch_all(db.reader, "SELECT status, COUNT(*) FROM notifications GROUP BY status")
        by_status = {r[0]: r[1] for r in rows}
        first, last = ok[0].at, ok[-1].at
        achieved = (len(ok) - 1) / (last - first) if len(ok) > 1 and last > first else float("nan")
        # The fastest any 1-second window saw: the fake's limit is on this.
        times = [c.at for c in ok]
        peak, j = 0, 0
        for k, t in enumerate(times):
            while t - times[j] >= 1.0:
                j += 1
            peak = max(peak, k - j + 1)
        deviation = (achieved - rate) / rate
        # Idle stretches: where the time between deliveries went well past the configured gap.
        gaps = [(b - a, k + 1) for k, (a, b) in enumerate(itertools.pairwise(times)) if b - a > 3 / rate]
        print(line("notifications queued", f"{count} to {min(count, CHATS)} chats"))
        print(line("configured worker rate / fake limit", f"{rate:g}/s / {FAKE_LIMIT}/s"))
        print(line("faults injected", f"429: {injected[429]}, 500: {injected[500]}, 502: {injected[502]}"))
        print(line("sendMessage refused: 429 / 5xx", f"{refused_429} / {refused_5xx} "
                   f"(429s beyond the injected ones = the fake's limit hit: {refused_429 - injected[429]})"))
        print(line("delivered (outbox rows by status)", str(by_status)))
        print(line("elapsed, first to last delivery", f"{last - first:.1f} s (run {time.monotonic() - started:.1f} s)"))
        print(line("peak sends in any 1-second window", str(peak)))
        print(line("idle gaps (> 3 x the configured gap)", f"{len(gaps)}, {sum(g for g, _ in gaps):.1f} s in all; "
                   f"after deliveries no. {[k for _, k in gaps[:8]]}{' ...' if len(gaps) > 8 else ''}"))
        idle = sum(g for g, _ in gaps)
        print(line("rate outside the idle gaps", f"{(len(ok) - 1) / (last - first - idle):.2f}/s (pacing alone)"))
        print(line("achieved rate", f"{achieved:.2f}/s ({deviation:+.1%} vs {rate:g}/s)", "within 5%",
                   abs(deviation) <= 0.05))
        print(line("lost (never arrived)", str(len(lost)) + (f" e.g. {lost[:5]}" if lost else ""), "0", not lost))
        print(line("duplicated (arrived twice or more)", str(len(duplicated)), "0", not duplicated))
        if count < 10_000:
            print(line("projection for 10,000", f"{10_000 / achieved:.0f} s at {achieved:.2f}/s; faults scale "
                       f"with the count (10 x 429 + 20 x 5xx)"))
    await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="notifications (default 1,000)")
    parser.add_argument("--full", action="store_true", help="the issue's 10,000 notifications (about 7 minutes)")
    parser.add_argument("--rate", type=float, default=25.0, help="the worker's global rate (default 25, its own)")
    args = parser.parse_args()
    count = 10_000 if args.full else args.count
    header(f"notification delivery: {count} notifications, worker at {args.rate:g}/s, fake Bot API limit "
           f"{FAKE_LIMIT}/s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-notifications-"))
    try:
        asyncio.run(run(count, args.rate, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
