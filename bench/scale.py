"""Benchmark 4: the bot on a big database: query latency, the reconciler's pass, and peak memory.

    .venv/bin/python -m bench.scale            # builds /tmp/bench-scale.sqlite3 first if missing (bench/generate.py)
    .venv/bin/python -m bench.scale --database postgresql://postgres@127.0.0.1:5432/test

With --database, the copy is moved into a PostgreSQL schema of its own (the bot's copy-to-postgres,
services/store/transfer.py) and the application runs on PostgreSQL; the schema is dropped afterwards.

The database (bench/generate.py): 100,000 users, 1,000,000 ledger lines, 200,000 deposits, 2,000 of them pending.
Each run works on a fresh copy of it. A separate process builds the real application (bot/app.py
build_application, sandbox gateway) on the copy and measures, one at a time:
  * /balance and /history as the bot runs them: the queries (users.get; ledger.for_user, the 20 lines /user shows;
    deposits.count_for_user + for_user for a /history page), and the whole update through the real dispatcher with
    an in-process recording Bot API session (bench/common.py), for 300 random users and the "whale" (user 1: 10,000
    deposits, 100,000 ledger lines);
  * /stats all: services.admin_reports.stats(db, None), 5 times;
  * the reconciler: Reconciler.run_once() with the sandbox gateway (it expires the overdue deposits and polls up to
    200 due ones), twice;
  * its peak RSS (getrusage ru_maxrss) at the end, beside a process that only does `import aiogram`.
Targets (issue): each user-facing query under 50 ms (p99 here), /stats all under 500 ms, RSS at most 1.3 x the bare
aiogram import.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, header, line, message_update, percentile, pg_schema, recording_session

TOKEN = "123456:BENCH-scale-token"
SAMPLE = 300
WHALE = 1


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 50) * 1000, "p99": percentile(values, 99) * 1000,
            "max": max(values) * 1000}


async def measure(db_url: str) -> dict[str, Any]:
    from aiogram import Bot
    from aiogram.client.default import DefaultBotProperties
    from aiogram.enums import ParseMode
    from aiogram.types import Update

    from bot.app import build_application
    from bot.config import load_settings
    from bot.heap import freeze_startup_heap
    from services import admin_reports
    from services.store import deposits, ledger, users

    settings = load_settings({"BOT_TOKEN": TOKEN, "DATABASE_URL": db_url, "PAYMENT_GATEWAY": "sandbox",
                              "ADMIN_CHAT_ID": "-1001234567890", "TELEGRAM_API_URL": "http://127.0.0.1:9"})
    started = time.perf_counter()
    app = await build_application(settings)
    out: dict[str, Any] = {"startup_s": time.perf_counter() - started}
    freeze_startup_heap()  # as `python -m bot` does once the application is built
    db = app.db
    rng = random.Random(7)
    sample = rng.sample(range(2, 100_001), SAMPLE)

    async def timed(call: Any) -> float:
        """Seconds to run `call` (a coroutine, created just before)."""
        t = time.perf_counter()
        await call
        return time.perf_counter() - t

    # --- the queries ---
    queries: dict[str, list[float]] = {"balance": [], "ledger": [], "history": [], "history_last_page": []}
    for uid in [*sample, WHALE]:
        async def history(uid: int, page: int | None) -> None:
            total = await deposits.count_for_user(db.reader, uid)
            last = max(0, (total - 1) // 5) if page is None else page
            await deposits.for_user(db.reader, uid, limit=5, offset=last * 5)

        queries["balance"].append(await timed(users.get(db.reader, uid)))
        queries["ledger"].append(await timed(ledger.for_user(db.reader, uid, 20)))
        queries["history"].append(await timed(history(uid, 0)))
        queries["history_last_page"].append(await timed(history(uid, None)))
    out["queries"] = {name: {**_ms(values[:-1]), "whale": values[-1] * 1000} for name, values in queries.items()}

    # --- whole updates through the real dispatcher ---
    session = recording_session()
    bot = Bot(TOKEN, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))
    updates: dict[str, list[float]] = {"/balance": [], "/history": []}
    update_id = 0
    for uid in [*sample, WHALE]:
        for command, times in updates.items():
            update_id += 1
            # The sender as stored, so the middleware reads and doesn't rewrite the user (the ordinary case).
            raw = message_update(update_id, uid, command, update_id, first_name=f"User {uid}",
                                 username=f"user{uid}" if uid % 3 else None,
                                 language_code="ru" if uid % 5 == 0 else "en")
            t = time.perf_counter()
            await app.dispatcher.feed_update(bot, Update.model_validate(raw, context={"bot": bot}))
            times.append(time.perf_counter() - t)
    out["updates"] = {name: {**_ms(values[:-1]), "whale": values[-1] * 1000} for name, values in updates.items()}
    out["api_calls"] = session.calls

    # --- /stats ---
    stats_times = {}
    for period, since in (("all", None), ("30d", int(time.time()) - 30 * 86400), ("today", None)):
        if period == "today":
            since = admin_reports.period_start("today", int(time.time()))
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            result = await admin_reports.stats(db, since)
            runs.append(time.perf_counter() - t)
        stats_times[period] = {"runs_ms": [r * 1000 for r in runs], "created": result.created}
    out["stats"] = stats_times

    # --- the reconciler ---
    passes = []
    for _ in range(2):
        t = time.perf_counter()
        report = await app.reconciler.run_once()
        passes.append({"ms": (time.perf_counter() - t) * 1000, "checked": report.checked, "expired": report.expired,
                       "credited": report.credited, "errors": report.errors})
    out["reconciler"] = passes

    await bot.session.close()
    await app.close()
    out["maxrss_kb"] = peak_rss_kb()
    return out


def peak_rss_kb() -> int:
    """This process's peak RSS: VmHWM, which belongs to the process image. (ru_maxrss is carried across fork and
    exec on Linux, so a child started by a big parent reported the parent's peak: both sides read 333.8 MiB.)"""
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith("VmHWM:"):
            return int(row.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


async def copy_to_postgres(sqlite_path: Path, url: str) -> None:
    """The operator's own move to PostgreSQL (`python -m bot copy-to-postgres`), quietly."""
    from services.store.db import DatabaseURL
    from services.store.transfer import copy_sqlite_to_postgres

    await copy_sqlite_to_postgres(DatabaseURL.parse(sqlite_path), DatabaseURL.parse(url), progress=lambda _: None)


def bare_rss() -> int:
    code = "import aiogram; from bench.scale import peak_rss_kb; print(peak_rss_kb())"
    return int(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=60).stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", type=Path, default=Path("/tmp/bench-scale.sqlite3"),
                        help="the generated database (built with bench/generate.py when missing)")
    parser.add_argument("--regenerate", action="store_true")
    parser.add_argument("--database", metavar="URL",
                        help="postgresql://… to run on PostgreSQL: the generated file is copied into a schema of its "
                             "own there (dropped afterwards)")
    parser.add_argument("--measure", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(asyncio.run(measure(args.measure))))
        return 0

    engine = "PostgreSQL" if args.database else "SQLite"
    header(f"scale on {engine}: 100,000 users, 1,000,000 ledger lines, 200,000 deposits")
    if args.regenerate or not args.db.exists():
        from bench.generate import generate

        result = generate(args.db)
        print(f"  generated {args.db} ({result['mb']:.0f} MB) in {result['seconds']:.1f}s")
    tmp = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    schema = f"bench_scale_{os.getpid()}"
    try:
        work = tmp / "bot.sqlite3"
        shutil.copyfile(args.db, work)
        db_url = f"sqlite:///{work}"
        if args.database:
            db_url = asyncio.run(pg_schema(args.database, schema, create=True))
            started = time.perf_counter()
            asyncio.run(copy_to_postgres(work, db_url))
            print(f"  copied into PostgreSQL (schema {schema}) in {time.perf_counter() - started:.1f}s")
        run = subprocess.run([sys.executable, "-m", "bench.scale", "--measure", db_url], cwd=ROOT,
                             capture_output=True, text=True, timeout=170, check=False)
        if run.returncode != 0:
            print(run.stderr, file=sys.stderr)
            raise SystemExit("the measuring process failed")
        out = json.loads(run.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if args.database:
            asyncio.run(pg_schema(args.database, schema, create=False))
    bare = bare_rss()

    print(f"  application built on the copy in {out['startup_s'] * 1000:.0f} ms; {SAMPLE} random users + the whale")
    print("queries (ms; p50 / p99 / max over the random users; the whale apart):")
    names = {"balance": "/balance: users.get", "ledger": "ledger.for_user (20 lines, as /user)",
             "history": "/history: count_for_user + for_user, page 1", "history_last_page": "/history, last page"}
    for key, label in names.items():
        q = out["queries"][key]
        ok = q["p99"] < 50 and q["whale"] < 50
        print(line(label, f"{q['p50']:.2f} / {q['p99']:.2f} / {q['max']:.2f}; whale {q['whale']:.2f}",
                   "< 50 ms", ok))
    print("whole updates through the dispatcher (ms; same users):")
    for command, q in out["updates"].items():
        ok = q["p99"] < 50 and q["whale"] < 50
        print(line(command, f"{q['p50']:.2f} / {q['p99']:.2f} / {q['max']:.2f}; whale {q['whale']:.2f}",
                   "< 50 ms", ok))
    for period, s in out["stats"].items():
        runs = s["runs_ms"]
        label = f"/stats {period} ({s['created']:,} deposits)"
        value = f"median {sorted(runs)[2]:.0f} ms, max {max(runs):.0f} ms (runs {', '.join(f'{r:.0f}' for r in runs)})"
        if period == "all":
            print(line(label, value, "< 500 ms", max(runs) < 500))
        else:
            print(line(label, value))
    for n, p in enumerate(out["reconciler"], 1):
        print(line(f"reconciler pass {n}", f"{p['ms']:.0f} ms: expired {p['expired']}, checked {p['checked']}, "
                   f"credited {p['credited']}, errors {p['errors']}"))
    ratio = out["maxrss_kb"] / bare
    print(line("peak RSS: bot after all of the above", f"{out['maxrss_kb'] / 1024:.1f} MiB"))
    print(line("peak RSS: `import aiogram` alone", f"{bare / 1024:.1f} MiB"))
    print(line("RSS ratio", f"{ratio:.2f}", "<= 1.3", ratio <= 1.3))
    return 0


if __name__ == "__main__":
    sys.exit(main())
