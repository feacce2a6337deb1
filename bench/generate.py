"""Generate the scale benchmark's database: 100,000 users, 1,000,000 ledger lines, 200,000 deposits.

    .venv/bin/python -m bench.generate [--out /tmp/bench-scale.sqlite3]

The schema is the bot's own (services.store.Database migrates the empty file); the rows are then written with the
sqlite3 module, executemany in one transaction. The balance trigger is set aside while the ledger is loaded and the
cached balances are computed from the ledger in one UPDATE, then the trigger is put back exactly as it was, so the
file is what the bot would have built line by line (balance = ledger sum for every user).

Shape (seeded, so every run builds the same file):
  * users: 100,000; user 1 is a "whale" with 10,000 deposits and 100,000 ledger lines.
  * deposits: 200,000 over the last 365 days: ~60% paid, ~25% expired, ~10% cancelled, ~4% failed, and 2,000
    pending (1,800 due for a status check and not yet expired, 200 past their expiry: the reconciler's work).
  * ledger: a credit for every paid deposit, a bonus for a tenth of them, and adjustments up to 1,000,000 lines.
"""
from __future__ import annotations

import argparse
import asyncio
import random
import sqlite3
import sys
import time
from pathlib import Path

DEFAULT_OUT = Path("/tmp/bench-scale.sqlite3")
USERS = 100_000
DEPOSITS = 200_000
LEDGER = 1_000_000
WHALE = 1
WHALE_DEPOSITS = 10_000
WHALE_LEDGER = 100_000
PENDING_DUE = 1_800
PENDING_OVERDUE = 200
PAIRS = [("USDT", "TRON"), ("USDT", "BSC"), ("USDT", "ETH"), ("BTC", "BTC"), ("ETH", "ETH"), ("LTC", "LTC"),
         ("TRX", "TRON"), ("TON", "TON"), ("USDC", "POLYGON"), ("SOL", "SOL")]
YEAR = 365 * 24 * 3600


async def _schema(path: Path) -> None:
    from services.store import Database

    db = Database(path)
    await db.connect()
    await db.close()


def generate(path: Path, *, users: int = USERS, deposits: int = DEPOSITS, ledger: int = LEDGER) -> dict[str, float]:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    started = time.perf_counter()
    asyncio.run(_schema(path))
    rng = random.Random(20261121)
    now = int(time.time())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")

    conn.executemany(
        "INSERT INTO users (id, username, first_name, locale, telegram_lang, balance_cents, created_at, updated_at)"
        " VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
        ((uid, f"user{uid}" if uid % 3 else None, f"User {uid}", None, "ru" if uid % 5 == 0 else "en",
          now - YEAR - uid, now - YEAR - uid) for uid in range(1, users + 1)))

    # Deposits in creation order: ids grow with created_at, as in the bot.
    pending_from = deposits - PENDING_DUE - PENDING_OVERDUE
    whale_ids = set(rng.sample(range(1, pending_from + 1), WHALE_DEPOSITS))
    rows = []
    paid: list[tuple[int, int, int, int]] = []  # (deposit id, user id, cents, created_at)
    for i in range(1, deposits + 1):
        created = now - YEAR + (YEAR - 7200) * i // deposits
        uid = WHALE if i in whale_ids else rng.randint(2, users)
        coin, network = PAIRS[i % len(PAIRS)]
        cents = rng.choice((500, 1000, 1250, 2500, 5000, 10000, 25000))
        order = f"sandbox-{i}"
        address = f"T{i:033d}"
        expires = created + 1800
        credited = bonus = txid = paid_at = next_check = last_checked = None
        reason = None
        if i > pending_from:
            status = "pending"
            if i <= pending_from + PENDING_OVERDUE:
                created, expires = now - 3600, now - 1800            # past expiry: the pass expires it
                next_check = now + 60
            else:
                created, expires = now - 300, now + 1500             # due for a check now
                next_check = now - rng.randint(0, 60)
        else:
            roll = rng.random()
            if roll < 0.61:
                status, credited, paid_at, txid = "paid", cents, created + 600, f"{i:064x}"
                bonus = cents // 10 if i % 10 == 0 else 0
                paid.append((i, uid, cents, created))
            elif roll < 0.86:
                status = "expired"
            elif roll < 0.96:
                status, reason = "cancelled", "cancelled by user"
            else:
                status, reason, order, address = "failed", "create: gateway unavailable", None, None
        rows.append((i, uid, uid, "sandbox", order, status, coin, network, cents, cents, "12.5", coin, address,
                     expires, credited, bonus, txid, reason, uid, 100 + i, next_check, last_checked, created,
                     created, paid_at))
    conn.executemany(
        """INSERT INTO deposits (id, user_id, chat_id, gateway, order_id, status, coin, network, amount_cents,
               quoted_cents, pay_amount, pay_currency, address, expires_at, credited_cents, bonus_cents, txid,
               failure_reason, message_chat_id, message_id, next_check_at, last_checked_at, created_at, updated_at,
               paid_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)""", rows)
    del rows

    trigger_sql = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = 'ledger_keeps_balance'").fetchone()[0]
    conn.execute("DROP TRIGGER ledger_keeps_balance")
    lines: list[tuple] = []
    for deposit_id, uid, cents, created in paid:
        lines.append((uid, cents, "deposit", deposit_id, f"deposit:{deposit_id}:credit",
                      f"sandbox sandbox-{deposit_id} via poll", None, created + 600))
        if deposit_id % 10 == 0:
            lines.append((uid, cents // 10, "bonus", deposit_id, f"deposit:{deposit_id}:bonus", "coupon WELCOME10",
                          None, created + 600))
    whale_left = WHALE_LEDGER - sum(1 for line in lines if line[0] == WHALE)
    n = 0
    while len(lines) < ledger:
        n += 1
        uid = WHALE if whale_left > 0 and n % 9 == 0 else rng.randint(2, users)
        if uid == WHALE:
            whale_left -= 1
        lines.append((uid, rng.choice((100, 250, 500, 1000, -100)), "adjustment", None, f"bench:adjust:{n}",
                      "bench adjustment", 42, now - YEAR + n % YEAR))
    lines.sort(key=lambda line: line[7])  # ledger ids in time order
    conn.executemany(
        "INSERT INTO ledger (user_id, amount_cents, kind, deposit_id, idempotency_key, note, actor_id, created_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", lines)
    del lines
    conn.execute("UPDATE users SET balance_cents = COALESCE((SELECT SUM(amount_cents) FROM ledger"
                 " WHERE ledger.user_id = users.id), 0)")
    conn.execute(trigger_sql)
    conn.execute("INSERT INTO coupons (code, kind, value, created_at) VALUES ('WELCOME10', 'percent', 10, ?)", (now,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    counts = {table: conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
              for table in ("users", "deposits", "ledger")}
    conn.close()
    return {**counts, "seconds": time.perf_counter() - started, "mb": path.stat().st_size / 1e6}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    result = generate(args.out)
    print(f"generated {args.out}: {result['users']:,} users, {result['ledger']:,} ledger lines, "
          f"{result['deposits']:,} deposits; {result['mb']:.0f} MB in {result['seconds']:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
