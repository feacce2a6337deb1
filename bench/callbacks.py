"""Benchmark 1: signed Cryptomus payment callbacks into the real listener, against a bare aiohttp handler.

    .venv/bin/python -m bench.callbacks [--generator auto|wrk|aiohttp] [--requests N] [--seconds 15]
                                        [--database postgresql://postgres@127.0.0.1:5432/test]

Three processes: this one prepares a database (a fresh SQLite file; or, with --database postgresql://…, a schema of
its own in that PostgreSQL database, dropped afterwards) with N pending Cryptomus deposits and N correctly signed
`paid` callbacks (one per deposit), then starts
  * the server: the real listener (bot/web.py + services/webhooks.py + services/settlement.py, wired by hand like
    tests/test_cryptomus_listener.py; the gateway's API base is a dead port, a signed callback needs no API call),
    with logging at INFO to a file as `python -m bot` does;
  * the load generator, with 32 concurrent connections: wrk with a Lua script (when installed: apt-get install wrk)
    sending the bodies in turn for --seconds, or else an aiohttp client process that sends every body once; both
    measure each request's latency.
Then the same generator runs against a bare aiohttp app (parse the JSON, answer 200) in its own process.
Settled = ledger rows in the database afterwards. Targets (issue): >= 2,000 settled callbacks/s and p99 < 50 ms.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from bench.common import (ROOT, free_port, header, line, percentile, pg_schema, start_server, stop_server,
                          until_stdin_closes)

MERCHANT = "bench-merchant-uuid"
KEY = "bench-payment-key-7f3a"
ADMIN = -100
USERS = 1000
PATH = "/webhooks/cryptomus"


# --- preparation --------------------------------------------------------------------------------------------------

async def prepare(db_path: str, bodies_path: Path, count: int) -> None:
    """N pending deposits made with the store's own repositories, and N signed `paid` bodies, one per line."""
    from services.store import Database, deposits, users
    from services.store.db import now_ts
    from tests.fakes.cryptomus import cryptomus_sign, php_json

    db = Database(db_path)
    await db.connect()
    now = now_ts()
    lines: list[bytes] = []
    async with db.transaction() as tx:
        for uid in range(1, USERS + 1):
            await users.upsert(tx, 10_000 + uid, f"user{uid}", f"User {uid}", "en")
        for i in range(count):
            uid = 10_000 + 1 + i % USERS
            amount = 500 + (i % 50) * 100
            deposit_id = await deposits.reserve(tx, user_id=uid, chat_id=uid, gateway="cryptomus", coin="USDT",
                                                 network="TRON", amount_cents=amount, coupon_id=None,
                                                 gateway_coupon=None)
            order_id = f"d{deposit_id}-{i:012x}"
            usd = f"{amount // 100}.{amount % 100:02d}"
            await deposits.mark_created(tx, deposit_id, order_id=order_id, address=f"TBench{deposit_id:030d}",
                                        pay_amount=Decimal(usd), pay_currency="USDT", expires_at=now + 3600,
                                        payment_url=None, quoted_cents=amount, first_check_at=now + 3600)
            data: dict[str, Any] = {
                "type": "payment", "uuid": f"00000000-0000-4000-8000-{i:012x}", "order_id": order_id,
                "amount": usd, "payment_amount": usd, "payment_amount_usd": usd, "merchant_amount": usd,
                "commission": "0.00", "is_final": True, "status": "paid", "from": "TSender0000000000000000000000",
                "wallet_address_uuid": None, "network": "tron", "currency": "USD", "payer_currency": "USDT",
                "payer_amount": usd, "additional_data": None, "txid": f"{i:064x}",
            }
            data["sign"] = cryptomus_sign(php_json(data), KEY)
            lines.append(php_json(data).encode("utf-8"))
    await db.close()
    bodies_path.write_bytes(b"\n".join(lines) + b"\n")


# --- the servers (each in its own process) ---------------------------------------------------------------------------

async def serve_real(db_path: str, port: int, log_path: Path, *, profile: str | None = None,
                     synchronous: str | None = None) -> None:
    import logging

    from aiohttp import web

    from bot.heap import freeze_startup_heap
    from bot.web import build_web_app
    from services.gateways.cryptomus import CryptomusGateway
    from services.settlement import Settler
    from services.store import Database
    from services.webhooks import CallbackInbox, CallbackPolicy

    logging.basicConfig(level=logging.INFO, filename=str(log_path),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    db = Database(db_path)
    await db.connect()
    if synchronous:  # diagnosis only (--sync): what the durability setting costs
        for conn in (db._writer, db._reader.raw):  # type: ignore[attr-defined]  # SQLite only
            await conn.execute(f"PRAGMA synchronous={synchronous}")
    dead = f"http://127.0.0.1:{free_port()}"  # never called: a signed callback carries verified data
    gateway = CryptomusGateway(dead, MERCHANT, KEY, callback_url=f"http://127.0.0.1:{port}{PATH}")
    settler = Settler(db, admin_chat_id=ADMIN)
    inbox = CallbackInbox(db, gateway, settler, admin_chat_id=ADMIN, policies={"cryptomus": CallbackPolicy()})
    runner = web.AppRunner(build_web_app(db, gateway, inbox), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    freeze_startup_heap()  # as `python -m bot` does once the application is built
    profiler = None
    if profile:  # diagnosis only (--profile): where the listener's time goes
        import cProfile
        profiler = cProfile.Profile()
        profiler.enable()
    await until_stdin_closes()
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    await runner.cleanup()
    await gateway.close()
    await db.close()


async def serve_bare(port: int) -> None:
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        await request.json()
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post(PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
    await until_stdin_closes()
    await runner.cleanup()


# --- the engine's own ceiling (its own process) -------------------------------------------------------------------

CEILING_SECONDS = 5.0
_CEILING_SCHEMA = (
    "CREATE TABLE users (id BIGINT PRIMARY KEY, balance_cents BIGINT NOT NULL DEFAULT 0)",
    "CREATE TABLE ledger (id {serial} PRIMARY KEY, user_id BIGINT NOT NULL REFERENCES users(id), "
    "amount_cents BIGINT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE)",
    "CREATE TABLE outbox (id {serial} PRIMARY KEY, dedupe_key TEXT NOT NULL UNIQUE, payload TEXT NOT NULL)",
)
_LEDGER = "INSERT INTO ledger (user_id, amount_cents, idempotency_key) VALUES ({p1}, {p2}, {p3}) " \
          "ON CONFLICT (idempotency_key) DO NOTHING RETURNING id"
_BALANCE = "UPDATE users SET balance_cents = balance_cents + {p2} WHERE id = {p1}"
_OUTBOX = "INSERT INTO outbox (dedupe_key, payload) VALUES ({p1}, {p2}) ON CONFLICT (dedupe_key) DO NOTHING"


async def ceiling(url: str, connections: int, seconds: float = CEILING_SECONDS) -> dict[str, Any]:
    """The raw idempotent credit, as fast as the engine's driver does it with nothing of the bot around it: INSERT a
    ledger line ON CONFLICT DO NOTHING RETURNING, UPDATE the balance, INSERT an outbox row ON CONFLICT DO NOTHING,
    in one transaction, `connections` workers at once over 1,000 users (scale-out.md section 5's measurement).
    SQLite: aiosqlite, WAL, synchronous=FULL, one writer as the bot has. PostgreSQL: asyncpg, a connection per
    worker, the explicit transaction (5 round trips) and the same as one CTE statement (1 round trip)."""
    counter = iter(range(10**12))
    results: dict[str, Any] = {}

    async def closed_loop(name: str, credit: Any) -> None:
        latencies: list[float] = []
        stop = time.perf_counter() + 0.3 + seconds
        measuring_from = time.perf_counter() + 0.3

        async def worker() -> None:
            while (now := time.perf_counter()) < stop:
                n = next(counter)
                await credit(1 + n % USERS, 100 + n % 7, f"ceiling:{n}")
                if now >= measuring_from:
                    latencies.append(time.perf_counter() - now)

        await asyncio.gather(*(worker() for _ in range(connections)))
        results[name] = {"rate": len(latencies) / seconds, "p50_ms": percentile(latencies, 50) * 1000,
                         "p99_ms": percentile(latencies, 99) * 1000}

    if url.startswith("postgresql://") or url.startswith("postgres://"):
        import asyncpg

        params = {"p1": "$1", "p2": "$2", "p3": "$3"}
        pool = await asyncpg.create_pool(url, min_size=connections, max_size=connections)
        try:
            async with pool.acquire() as conn:
                for statement in _CEILING_SCHEMA:
                    await conn.execute(statement.format(serial="BIGSERIAL"))
                await conn.executemany("INSERT INTO users (id) VALUES ($1)", [(u,) for u in range(1, USERS + 1)])
            ledger_sql, balance_sql = _LEDGER.format(**params), _BALANCE.format(**params)
            outbox_sql = _OUTBOX.format(**params)
            cte = ("WITH line AS (" + ledger_sql + "), bal AS (UPDATE users SET balance_cents = balance_cents + $2 "
                   "WHERE id = $1 AND EXISTS (SELECT 1 FROM line)) " + _OUTBOX.format(p1="$3", p2="'{}'") +
                   " RETURNING (SELECT id FROM line)")

            async def explicit(user: int, cents: int, key: str) -> None:
                async with pool.acquire() as conn, conn.transaction():
                    if await conn.fetchval(ledger_sql, user, cents, key) is not None:
                        await conn.execute(balance_sql, user, cents)
                        await conn.execute(outbox_sql, key, "{}")

            async def folded(user: int, cents: int, key: str) -> None:
                async with pool.acquire() as conn:
                    await conn.fetchval(cte, user, cents, key)

            await closed_loop("transaction", explicit)
            await closed_loop("one statement", folded)
        finally:
            await pool.close()
        return results

    import aiosqlite

    path = Path(url.removeprefix("sqlite:///"))
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=FULL")
        for statement in _CEILING_SCHEMA:
            await conn.execute(statement.format(serial="INTEGER"))
        await conn.executemany("INSERT INTO users (id) VALUES (?)", [(u,) for u in range(1, USERS + 1)])
        params = {"p1": "?", "p2": "?", "p3": "?"}
        ledger_sql, balance_sql, outbox_sql = (q.format(**params) for q in (_LEDGER, _BALANCE, _OUTBOX))
        writer = asyncio.Lock()

        async def credit(user: int, cents: int, key: str) -> None:
            async with writer:
                await conn.execute("BEGIN IMMEDIATE")
                try:
                    if await conn.execute_fetchall(ledger_sql, (user, cents, key)):
                        await conn.execute(balance_sql, (cents, user))
                        await conn.execute(outbox_sql, (key, "{}"))
                except BaseException:
                    await conn.execute("ROLLBACK")
                    raise
                await conn.execute("COMMIT")

        await closed_loop("transaction", credit)
    finally:
        await conn.close()
    return results


def measure_ceiling(url: str, connections: int, tmp: Path) -> dict[str, Any]:
    """In a process of its own, as the listener is; on a scratch file (SQLite) or schema (PostgreSQL)."""
    if not url.startswith("postgres"):
        url = f"sqlite:///{tmp / 'ceiling.sqlite3'}"
    out = subprocess.run([sys.executable, "-m", "bench.callbacks", "--ceiling", url, "--connections",
                          str(connections)], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"ceiling failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the load generator (its own process) ----------------------------------------------------------------------------

async def generate(url: str, bodies_path: Path, connections: int) -> dict[str, Any]:
    import aiohttp

    bodies = [b for b in bodies_path.read_bytes().split(b"\n") if b]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    next_index = 0
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < len(bodies):
                body = bodies[next_index]
                next_index += 1
                start = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except aiohttp.ClientError:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - started
    return {"sent": len(bodies), "elapsed": elapsed, "statuses": statuses, "errors": errors,
            "p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000,
            "max_ms": max(latencies, default=float("nan")) * 1000}


_WRK_LUA = r"""
-- Each wrk thread cycles through its own slice of the pre-built bodies (wrk runs for a fixed duration).
local bodies_file = os.getenv("BENCH_BODIES")
local counter = 0
function setup(thread)
  thread:set("id", counter); counter = counter + 1
end
function init(args)
  local all = {}
  for l in io.lines(bodies_file) do if #l > 0 then table.insert(all, l) end end
  local n = tonumber(os.getenv("BENCH_THREADS"))
  bodies = {}
  for k = id + 1, #all, n do table.insert(bodies, all[k]) end
  i = 0
  wrk.method = "POST"; wrk.headers["Content-Type"] = "application/json"
end
function request()
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end
function done(summary, latency, requests)
  io.write(string.format("WRK %d %d %d %d %f %f %f\n", summary.requests, summary.duration,
    summary.errors.status, summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout, latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def run_wrk(url: str, bodies_path: Path, connections: int, seconds: int, tmp: Path) -> dict[str, Any]:
    """wrk for a fixed time; bodies are sent in turn and start over when a thread has sent its slice."""
    script = tmp / "callbacks.lua"
    script.write_text(_WRK_LUA)
    threads = 2
    env = {**os.environ, "BENCH_BODIES": str(bodies_path), "BENCH_THREADS": str(threads)}
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "10s",
               "-s", str(script), url]
    out = subprocess.run(command, capture_output=True, text=True, env=env, timeout=seconds + 60, check=False)
    for row in out.stdout.splitlines():
        if row.startswith("WRK "):
            requests, duration_us, bad_status, socket_errors, p50, p99, mx = row.split()[1:]
            return {"sent": int(requests), "elapsed": int(duration_us) / 1e6,
                    "statuses": {"non-2xx": int(bad_status)} if int(bad_status) else {},
                    "errors": int(socket_errors), "p50_ms": float(p50) / 1000, "p99_ms": float(p99) / 1000,
                    "max_ms": float(mx) / 1000}
    raise RuntimeError(f"wrk gave no summary: {out.stdout}\n{out.stderr}")


# --- orchestration ---------------------------------------------------------------------------------------------------

def load(url: str, bodies: Path, connections: int, generator: str, seconds: int, tmp: Path) -> dict[str, Any]:
    if generator == "wrk":
        return run_wrk(url, bodies, connections, seconds, tmp)
    out = subprocess.run([sys.executable, "-m", "bench.callbacks", "--generate", url, "--bodies", str(bodies),
                          "--connections", str(connections)], cwd=ROOT, capture_output=True, text=True, timeout=170,
                         check=False)
    if out.returncode != 0:
        raise RuntimeError(f"generator failed: {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def count_results(db_path: str) -> dict[str, int]:
    from services.store import Database
    from services.store.db import fetch_value

    db = Database(db_path)
    await db.connect()
    try:
        return {
            "ledger": int(await fetch_value(db.reader, "SELECT COUNT(*) FROM ledger")),
            "paid": int(await fetch_value(db.reader, "SELECT COUNT(*) FROM deposits WHERE status = 'paid'")),
            "callbacks": int(await fetch_value(db.reader, "SELECT COUNT(*) FROM callbacks")),
            "credited": int(await fetch_value(db.reader,
                                              "SELECT COUNT(*) FROM callbacks WHERE verdict = 'credited'")),
            "mismatches": int(await fetch_value(db.reader, """
                SELECT COUNT(*) FROM (SELECT u.id FROM users u LEFT JOIN ledger l ON l.user_id = u.id
                GROUP BY u.id, u.balance_cents HAVING u.balance_cents <> COALESCE(SUM(l.amount_cents), 0)) AS m""")),
        }
    finally:
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=None,
                        help="distinct deposits and signed callbacks (default 45,000 with wrk, 5,000 with aiohttp)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--generator", choices=("auto", "aiohttp", "wrk"), default="auto",
                        help="wrk: for --seconds, bodies in turn; aiohttp: a Python client process sending each body "
                             "once; auto (default): wrk when installed")
    parser.add_argument("--seconds", type=int, default=15, help="wrk's run time (default 15)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (database, log)")
    parser.add_argument("--database", metavar="URL",
                        help="postgresql://… to run on PostgreSQL, in a schema of its own that is dropped afterwards "
                             "(default: a fresh SQLite file)")
    parser.add_argument("--profile", metavar="FILE", help="diagnosis: cProfile the listener into FILE")
    parser.add_argument("--sync", choices=("NORMAL", "OFF"),
                        help="diagnosis: run the listener with PRAGMA synchronous=... instead of the bot's FULL")
    # internal: the child processes
    parser.add_argument("--serve", choices=("real", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db", help=argparse.SUPPRESS)
    parser.add_argument("--log", help=argparse.SUPPRESS)
    parser.add_argument("--generate", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.serve == "real":
        asyncio.run(serve_real(args.db, args.port, Path(args.log), profile=args.profile,
                               synchronous=args.sync))
        return 0
    if args.serve == "bare":
        asyncio.run(serve_bare(args.port))
        return 0
    if args.ceiling:
        print(json.dumps(asyncio.run(ceiling(args.ceiling, args.connections))))
        return 0
    if args.generate:
        print(json.dumps(asyncio.run(generate(args.generate, Path(args.bodies), args.connections))))
        return 0
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") else "aiohttp"
    if args.generator == "wrk" and shutil.which("wrk") is None:
        print("wrk is not installed (apt-get install wrk); use --generator aiohttp", file=sys.stderr)
        return 2
    if args.requests is None:
        args.requests = 45_000 if args.generator == "wrk" else 5_000

    how = f"wrk for {args.seconds}s" if args.generator == "wrk" else "aiohttp client, each body once"
    header(f"payment callbacks: {args.requests} pending deposits with signed callbacks, {args.connections} "
           f"connections, generator {how}")
    if args.database and args.sync:
        print("--sync is SQLite's; leave it out with --database", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="bench-callbacks-"))
    schema = f"bench_{os.getpid()}"
    try:
        if args.database:
            db_path = asyncio.run(pg_schema(args.database, schema, create=True))
            engine = f"PostgreSQL {db_path.split('@')[-1].split('?')[0]}, READ COMMITTED, pool of 10"
        else:
            db_path = f"sqlite:///{tmp / 'bot.sqlite3'}"
            engine = f"file SQLite, WAL, synchronous={args.sync or 'FULL'}"
        bodies = tmp / "bodies.jsonl"
        started = time.perf_counter()
        asyncio.run(prepare(db_path, bodies, args.requests))
        print(f"  prepared {args.requests} pending deposits and signed bodies in {time.perf_counter() - started:.1f}s")

        port = free_port()
        server = start_server("bench.callbacks", ["--serve", "real", "--db", db_path, "--port", str(port),
                               "--log", str(tmp / "listener.log"),
                               *(["--profile", args.profile] if args.profile else []),
                               *(["--sync", args.sync] if args.sync else [])])
        try:
            real = load(f"http://127.0.0.1:{port}{PATH}", bodies, args.connections, args.generator, args.seconds,
                        tmp)
        finally:
            stop_server(server)
        counts = asyncio.run(count_results(db_path))

        if args.database:
            ceiling_url = asyncio.run(pg_schema(args.database, f"{schema}_ceiling", create=True))
            try:
                raw = measure_ceiling(ceiling_url, args.connections, tmp)
            finally:
                asyncio.run(pg_schema(args.database, f"{schema}_ceiling", create=False))
        else:
            raw = measure_ceiling("sqlite", args.connections, tmp)

        port = free_port()
        server = start_server("bench.callbacks", ["--serve", "bare", "--port", str(port)])
        try:
            bare = load(f"http://127.0.0.1:{port}{PATH}", bodies, args.connections, args.generator, args.seconds,
                        tmp)
        finally:
            stop_server(server)

        settled_rate = counts["ledger"] / real["elapsed"]
        bare_rate = bare["sent"] / bare["elapsed"]
        print(f"real listener ({engine}{', under cProfile' if args.profile else ''}):")
        print(line("requests sent / HTTP statuses", f"{real['sent']} / {real['statuses'] or 'n/a'}"
                   f"{' / errors ' + str(real['errors']) if real['errors'] else ''}"))
        print(line("settled (ledger rows) / deposits paid", f"{counts['ledger']} / {counts['paid']} "
                   f"(callbacks stored {counts['callbacks']}, credited {counts['credited']}, "
                   f"balance mismatches {counts['mismatches']})"))
        print(line("elapsed", f"{real['elapsed']:.2f} s"))
        if args.database:
            print(line("settled callbacks/s", f"{settled_rate:,.0f}", ">= 2,000/s on PostgreSQL", settled_rate >= 2000))
        else:
            print(line("settled callbacks/s", f"{settled_rate:,.0f}"))
        print(line("latency p50", f"{real['p50_ms']:.1f} ms"))
        print(line("latency p99", f"{real['p99_ms']:.1f} ms (max {real['max_ms']:.1f} ms)", "< 50 ms",
                   real["p99_ms"] < 50))
        ceiling_rate = raw["transaction"]["rate"]
        print(f"raw idempotent credit on the same engine ({args.connections} at once, {CEILING_SECONDS:.0f} s; "
              "ledger INSERT ON CONFLICT RETURNING + balance UPDATE + outbox INSERT, one transaction):")
        for name, figures in raw.items():
            print(line(f"  {name}", f"{figures['rate']:,.0f}/s, p50 {figures['p50_ms']:.1f} ms, "
                                    f"p99 {figures['p99_ms']:.1f} ms"))
        print(line("ratio settled/s : raw transaction/s", f"{settled_rate / ceiling_rate:.2f}", ">= 0.6",
                   settled_rate / ceiling_rate >= 0.6))
        print("bare aiohttp handler (json parse + 200), same generator, same bodies:")
        print(line("requests/s", f"{bare_rate:,.0f}"))
        print(line("latency p50 / p99", f"{bare['p50_ms']:.1f} ms / {bare['p99_ms']:.1f} ms"))
        print(line("ratio real settled/s : bare requests/s", f"{settled_rate / bare_rate:.3f} "
                   f"(1 : {bare_rate / settled_rate:.1f})"))
        if args.generator == "wrk" and counts["ledger"] >= args.requests:
            print(f"  NOTE: every one of the {args.requests} deposits was settled before wrk stopped, so the settled "
                  "rate is a lower bound: run again with more --requests")
        if args.keep:
            print(f"  kept {tmp}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        if args.database:
            asyncio.run(pg_schema(args.database, schema, create=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
