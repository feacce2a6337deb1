"""Benchmark: operator API charges per second through the real listener, against a bare aiohttp handler.

    .venv/bin/python -m bench.charges [--requests 5000] [--connections 32] [--sync NORMAL]
                                      [--database postgresql://postgres@127.0.0.1:5432/test]

In one run, each server in its own process on 127.0.0.1 and the load from another process (aiohttp, 32 connections):
  1. the real listener (build_application: the never-500 guard, the API's key check, rate limiter and envelope,
     services/wallet.py, SQLite with synchronous=FULL, or with --database PostgreSQL in a schema of its own that is
     dropped afterwards), POST /api/v1/users/{id}/charges, a fresh Idempotency-Key
     each, spread over 100 customers with enough money;
  2. a bare aiohttp handler that reads the JSON body and answers a charge-shaped 201 (the ceiling of HTTP here);
  3. the same charges called on Wallet.charge directly from 32 tasks, no HTTP (the ceiling of the store).
It prints charges/s, latency, the ratio to the bare handler, and checks the money (one ledger line per 201).
Then the raw idempotent credit transaction on the same engine (bench/callbacks.py's ceiling).
Targets: at least 1,000 charges/s on SQLite (issue 10); at least 0.6x the raw transaction and p99 under 50 ms on both
engines (issue 13). The rate limit is raised for the run (API_RATE_LIMIT).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.callbacks import measure_ceiling
from bench.common import (ROOT, free_port, header, line, percentile, pg_schema, start_server, stop_server,
                          until_stdin_closes)

KEY = "tk_bench-key-0123456789abcdefghijkl"
USERS = 100
TARGET = 1000.0


def settings_env(db_url: str, port: int) -> dict[str, str]:
    return {"BOT_TOKEN": "123456:BENCH-token", "DATABASE_URL": db_url, "PAYMENT_GATEWAY": "sandbox",
            "OPERATOR_API_KEY": KEY, "API_RATE_LIMIT": "1000000", "WEB_HOST": "127.0.0.1", "WEB_PORT": str(port),
            "LOG_LEVEL": "WARNING"}


async def prepare(db_url: str) -> None:
    from services.store import Database, LedgerKind
    from services.store import ledger, users

    db = Database(db_url)
    await db.connect()
    async with db.transaction() as tx:
        for user_id in range(1, USERS + 1):
            await users.upsert(tx, user_id, None, f"Bench {user_id}", "en")
            await ledger.append(tx, user_id=user_id, amount_cents=10_000_000, kind=LedgerKind.ADJUSTMENT,
                                idempotency_key=f"bench-seed:{user_id}")
    await db.close()


async def serve_real(db_url: str, port: int, synchronous: str | None) -> None:
    from aiohttp import web

    from bot.app import build_application
    from bot.config import load_settings
    from bot.heap import freeze_startup_heap

    app = await build_application(load_settings(settings_env(db_url, port)))
    if synchronous:  # diagnosis only: what the durability setting costs (SQLite)
        for conn in (app.db._writer, app.db._reader.raw):  # type: ignore[attr-defined]
            await conn.execute(f"PRAGMA synchronous={synchronous}")
    runner = web.AppRunner(app.web_app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    freeze_startup_heap()  # as `python -m bot` does once the application is built
    await until_stdin_closes()
    await runner.cleanup()
    await app.close()


async def serve_bare(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response({"charge_id": "ch_0", "amount": body.get("amount"), "amount_cents": 1,
                                  "balance": "1.00", "balance_cents": 100, "description": "", "reference": None,
                                  "created_at": "2026-01-01T00:00:00Z"}, status=201)

    app = web.Application()
    app.router.add_post("/api/v1/users/{user_id}/charges", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await until_stdin_closes()
    await runner.cleanup()


async def generate(base: str, requests: int, connections: int) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_index = 0
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            nonlocal next_index
            while next_index < requests:
                i = next_index
                next_index += 1
                user_id = i % USERS + 1
                headers = {"Authorization": f"Bearer {KEY}", "Idempotency-Key": f"bench-{i}"}
                start = time.perf_counter()
                async with session.post(f"{base}/api/v1/users/{user_id}/charges", headers=headers,
                                        json={"amount": "0.01", "description": "bench"}) as answer:
                    await answer.read()
                    statuses[answer.status] = statuses.get(answer.status, 0) + 1
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "statuses": statuses, "p50_ms": percentile(latencies, 50) * 1000,
            "p99_ms": percentile(latencies, 99) * 1000}


async def direct(db_url: str, requests: int, tasks: int) -> dict[str, Any]:
    """Wallet.charge from `tasks` coroutines in one process: the store's own ceiling, without HTTP."""
    from services.operator_events import OperatorEvents
    from services.store import Database
    from services.wallet import Wallet

    db = Database(db_url)
    await db.connect()
    wallet = Wallet(db, OperatorEvents(enabled=False))
    next_index = 0

    async def worker() -> None:
        nonlocal next_index
        while next_index < requests:
            i = next_index
            next_index += 1
            await wallet.charge(i % USERS + 1, 1, description="bench", reference=None, idempotency_key=f"direct-{i}")

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    elapsed = time.perf_counter() - started
    await db.close()
    return {"elapsed": elapsed}


def load(base: str, requests: int, connections: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.charges", "--generate", base, "--requests", str(requests),
                          "--connections", str(connections)], cwd=ROOT, capture_output=True, text=True, timeout=600,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


async def count(db_url: str) -> tuple[int, int, int]:
    from services.store import Database
    from services.store.db import fetch_value

    db = Database(db_url)
    await db.connect()
    lines = int(await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger WHERE kind = 'charge'"))
    charges = int(await fetch_value(db.reader, "SELECT COUNT(*) FROM charges"))
    mismatches = int(await fetch_value(db.reader, """
        SELECT COUNT(*) FROM users u WHERE u.balance_cents <>
               (SELECT COALESCE(SUM(amount_cents), 0) FROM ledger l WHERE l.user_id = u.id)"""))
    await db.close()
    return lines, charges, mismatches


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sync", default=None, help="diagnosis: run the real listener with this PRAGMA synchronous")
    parser.add_argument("--database", metavar="URL",
                        help="postgresql://… to run on PostgreSQL, in a schema of its own that is dropped afterwards "
                             "(default: a fresh SQLite file)")
    parser.add_argument("--serve-real", nargs=2, metavar=("DB", "PORT"), help=argparse.SUPPRESS)
    parser.add_argument("--serve-bare", metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--generate", metavar="BASE", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_real:
        asyncio.run(serve_real(args.serve_real[0], int(args.serve_real[1]), args.sync))
        return 0
    if args.serve_bare:
        asyncio.run(serve_bare(int(args.serve_bare)))
        return 0
    if args.generate:
        print(json.dumps(asyncio.run(generate(args.generate, args.requests, args.connections))))
        return 0

    if args.database and args.sync:
        print("--sync is SQLite's; leave it out with --database", file=sys.stderr)
        return 2
    engine = "PostgreSQL" if args.database else "SQLite"
    header(f"operator API charges on {engine}: {args.requests} charges over {USERS} customers, {args.connections} "
           f"connections{f', synchronous={args.sync}' if args.sync else ''}")
    schema = f"bench_charges_{os.getpid()}"
    with tempfile.TemporaryDirectory() as tmp:
        db_url = (asyncio.run(pg_schema(args.database, schema, create=True)) if args.database
                  else f"sqlite:///{Path(tmp) / 'bench.sqlite3'}")
        try:
            asyncio.run(prepare(db_url))
            port = free_port()
            server = start_server("bench.charges", ["--serve-real", db_url, str(port)]
                                  + (["--sync", args.sync] if args.sync else []))
            try:
                real = load(f"http://127.0.0.1:{port}", args.requests, args.connections)
            finally:
                stop_server(server)
            lines, charges, mismatches = asyncio.run(count(db_url))
            port = free_port()
            server = start_server("bench.charges", ["--serve-bare", str(port)])
            try:
                bare = load(f"http://127.0.0.1:{port}", args.requests, args.connections)
            finally:
                stop_server(server)
            store = asyncio.run(direct(db_url, args.requests, args.connections))
            # issue 13: the raw idempotent credit transaction on the same engine, in the same run (bench/callbacks.py)
            if args.database:
                ceiling_url = asyncio.run(pg_schema(args.database, f"{schema}_ceiling", create=True))
                try:
                    raw = measure_ceiling(ceiling_url, args.connections, Path(tmp))["transaction"]
                finally:
                    asyncio.run(pg_schema(args.database, f"{schema}_ceiling", create=False))
            else:
                raw = measure_ceiling("sqlite", args.connections, Path(tmp))["transaction"]
        finally:
            if args.database:
                asyncio.run(pg_schema(args.database, schema, create=False))

    real_rate = real["statuses"].get("201", 0) / real["elapsed"]
    bare_rate = bare["statuses"].get("201", 0) / bare["elapsed"]
    store_rate = args.requests / store["elapsed"]
    print(line("answers (real listener)", json.dumps(real["statuses"])))
    print(line("charges: ledger lines / charge rows", f"{lines} / {charges} (balance mismatches {mismatches})"))
    if args.database:
        print(line("charges/s through the real listener", f"{real_rate:,.0f}"))
    else:
        print(line("charges/s through the real listener", f"{real_rate:,.0f}", ">= 1,000/s", real_rate >= TARGET))
    print(line("latency p50 / p99", f"{real['p50_ms']:.1f} ms / {real['p99_ms']:.1f} ms"))
    print(line("bare aiohttp handler", f"{bare_rate:,.0f} req/s, p50 {bare['p50_ms']:.1f} ms, "
                                      f"p99 {bare['p99_ms']:.1f} ms"))
    print(line("ratio real : bare", f"{real_rate / bare_rate:.3f}"))
    print(line("Wallet.charge direct, 32 tasks, no HTTP", f"{store_rate:,.0f} charges/s (the store's ceiling)"))
    print(line("raw idempotent credit transaction", f"{raw['rate']:,.0f}/s, p50 {raw['p50_ms']:.1f} ms, "
                                                    f"p99 {raw['p99_ms']:.1f} ms (bench.callbacks' ceiling)"))
    print(line("ratio charges/s : raw transaction/s", f"{real_rate / raw['rate']:.2f}", ">= 0.6 (issue 13)",
               real_rate / raw["rate"] >= 0.6))
    print(line("latency p99", f"{real['p99_ms']:.1f} ms", "< 50 ms (issue 13)", real["p99_ms"] < 50))
    return 0


if __name__ == "__main__":
    sys.exit(main())
