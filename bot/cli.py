"""`python -m bot coupons|api-keys|sandbox-reset|migrate ...`: operator commands that need only the database (no
bot token, no Telegram)."""
from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone

from bot.config import ConfigError
from bot.database import open_database
from services import test_money
from services.api_access import KeyNameTaken, create_key, list_keys, revoke_key
from services.coupons import CouponSpecError, CouponSpecProblem, add_coupon, parse_coupon_spec
from services.money import format_usd
from services.store import Coupon, CouponKind, Database
from services.store import coupons as coupon_repo
from services.store.db import DEFAULT_DATABASE_URL, DatabaseUnreachable, DatabaseURL, SchemaTooNew

USAGE = """usage:
  python -m bot coupons add CODE 10% [USES] [until YYYY-MM-DD] [min AMOUNT]
  python -m bot coupons add CODE 5 [USES] [until YYYY-MM-DD] [min AMOUNT]     (a fixed $5.00 bonus)
  python -m bot coupons list
  python -m bot coupons disable CODE | enable CODE
examples:
  python -m bot coupons add WELCOME10 10% 100 until 2026-12-31 min 10
  python -m bot coupons add BONUS5 5"""

SPEC_PROBLEMS = {
    CouponSpecProblem.USAGE: "expected a code, a bonus, then optionally USES, until DATE and min AMOUNT",
    CouponSpecProblem.CODE: "the code must be 2 to 32 letters, digits, - or _",
    CouponSpecProblem.VALUE: "the bonus must be a percentage from 1% to 100%, or a USD amount like 5 or 2.50",
    CouponSpecProblem.USES: "the number of uses must be a whole number above zero",
    CouponSpecProblem.DATE: "the date must be written YYYY-MM-DD",
    CouponSpecProblem.MIN_AMOUNT: "the minimum must be a USD amount like 10 or 12.50",
}


def database_url() -> DatabaseURL | None:
    """DATABASE_URL from the environment, or None after printing what is wrong with it."""
    try:
        return DatabaseURL.parse(os.environ.get("DATABASE_URL", "").strip() or DEFAULT_DATABASE_URL)
    except ValueError as exc:
        print(f"Configuration error: DATABASE_URL: {exc}", file=sys.stderr)
        return None


async def _with_database(url: DatabaseURL, command: Callable[[Database], Awaitable[int]]) -> int:
    """`command`'s exit status, run on the opened database, which is closed however it ends; a database that can't be
    opened is one line and status 2, as any other bad setting is."""
    try:
        db = await open_database(url)
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    try:
        return await command(db)
    finally:
        await db.close()


def run_migrate(args: list[str]) -> int:
    """`python -m bot migrate`: bring the schema up to date and stop (a one-shot step before starting instances)."""
    if args:
        print("usage: python -m bot migrate", file=sys.stderr)
        return 2
    url = database_url()
    if url is None:
        return 2
    return asyncio.run(_migrate(url))


async def _migrate(url: DatabaseURL) -> int:
    db = Database(url)
    try:
        await db.connect()  # connecting migrates, under the engine's migration lock
        version = await db.schema_version()
    except (SchemaTooNew, DatabaseUnreachable) as exc:
        print(f"Not migrated: {exc}", file=sys.stderr)
        return 1
    finally:
        await db.close()
    print(f"{db.describe()}: schema version {version}")
    return 0


COPY_USAGE = """usage: DATABASE_URL=postgresql://… python -m bot copy-to-postgres [SQLITE_FILE]
  Copies the SQLite database (default data/bot.sqlite3) into the empty PostgreSQL database DATABASE_URL names,
  checks every balance against its ledger, and commits only if all of it went over. Stop the bot first."""


def run_copy_to_postgres(args: list[str]) -> int:
    if len(args) > 1 or (args and args[0].startswith("-")):
        print(COPY_USAGE, file=sys.stderr)
        return 2
    target = database_url()
    if target is None:
        return 2
    if target.dialect != "postgresql":
        print(f"Configuration error: DATABASE_URL must name the PostgreSQL database to copy into\n{COPY_USAGE}",
              file=sys.stderr)
        return 2
    try:
        source = DatabaseURL.parse(args[0] if args else DEFAULT_DATABASE_URL)
    except ValueError as exc:
        print(f"Not copied: {exc}", file=sys.stderr)
        return 2
    return asyncio.run(_copy_to_postgres(source, target))


async def _copy_to_postgres(source: DatabaseURL, target: DatabaseURL) -> int:
    from services.store.transfer import CopyRefused, copy_sqlite_to_postgres

    try:
        report = await copy_sqlite_to_postgres(source, target, progress=print)
    except (CopyRefused, SchemaTooNew, DatabaseUnreachable) as exc:
        print(f"Not copied: {exc}", file=sys.stderr)
        return 1
    print(f"Copied {sum(report.rows.values())} rows from {source.safe()} to {target.safe()}; {report.users} users, "
          f"balances {format_usd(report.balance_cents)} in all, each equal to its ledger sum. "
          f"Set DATABASE_URL to the PostgreSQL URL and start the bot.")
    return 0


def run_coupons(args: list[str]) -> int:
    url = database_url()
    if url is None:
        return 2
    if not args or args[0] not in ("add", "list", "disable", "enable"):
        print(USAGE, file=sys.stderr)
        return 2
    return asyncio.run(_with_database(url, lambda db: _coupons(db, args[0], args[1:])))


async def _coupons(db: Database, command: str, args: list[str]) -> int:
    if command == "add":
        try:
            spec = parse_coupon_spec(" ".join(args))
        except CouponSpecError as exc:
            got = f" (got {exc.detail!r})" if exc.detail else ""
            print(f"Not added: {SPEC_PROBLEMS[exc.problem]}{got}\n{USAGE}", file=sys.stderr)
            return 2
        if await add_coupon(db, spec) is None:
            print(f"Not added: a coupon {spec.code} exists already", file=sys.stderr)
            return 1
        added = await coupon_repo.by_code(db.reader, spec.code)
        assert added is not None
        print(f"Added {describe(added)}")
        return 0
    if command == "list":
        for coupon in await coupon_repo.all_coupons(db.reader):
            print(describe(coupon))
        return 0
    if len(args) != 1:
        print(USAGE, file=sys.stderr)
        return 2
    async with db.transaction() as tx:
        changed = await coupon_repo.set_active(tx, args[0], command == "enable")
    if not changed:
        print(f"No coupon {args[0]}", file=sys.stderr)
        return 1
    print(f"{args[0]} {command}d")
    return 0


def describe(coupon: Coupon) -> str:
    bonus = f"{coupon.value}%" if coupon.kind is CouponKind.PERCENT else format_usd(coupon.value)
    parts = [coupon.code, f"bonus {bonus}", f"{coupon.used_count}/{coupon.max_uses or '∞'} used"]
    if coupon.min_amount_cents:
        parts.append(f"min {format_usd(coupon.min_amount_cents)}")
    if coupon.expires_at:
        parts.append(f"until {datetime.fromtimestamp(coupon.expires_at, tz=timezone.utc):%Y-%m-%d}")
    if not coupon.active:
        parts.append("disabled")
    return ", ".join(parts)


API_KEYS_USAGE = """usage:
  python -m bot api-keys create NAME [--read-only]   prints a new key once; only its hash is kept
  python -m bot api-keys list
  python -m bot api-keys revoke NAME                  refused from the next request on
NAME: 1 to 64 letters, digits, '.', '_' or '-' (e.g. shop-prod)"""
_KEY_NAME_RE = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)


def run_api_keys(args: list[str]) -> int:
    url = database_url()
    if url is None:
        return 2
    command, rest = (args[0], args[1:]) if args else ("", [])
    valid = ((command == "create" and len(rest) in (1, 2) and rest[1:] in ([], ["--read-only"]))
             or (command == "list" and not rest) or (command == "revoke" and len(rest) == 1))
    if not valid or (rest and not _KEY_NAME_RE.fullmatch(rest[0])):
        print(API_KEYS_USAGE, file=sys.stderr)
        return 2
    return asyncio.run(_with_database(url, lambda db: _api_keys(db, command, rest)))


async def _api_keys(db: Database, command: str, args: list[str]) -> int:
    if command == "create":
        read_only = "--read-only" in args
        try:
            key = await create_key(db, args[0], read_only=read_only)
        except KeyNameTaken:
            print(f"Not created: a key named {args[0]} exists already (names are never reused)", file=sys.stderr)
            return 1
        scope = "read-only" if read_only else "full access"
        print(f"Created API key {args[0]} ({scope}). It is shown only this once; store it now:\n{key}")
        return 0
    if command == "list":
        for k in await list_keys(db):
            state = "revoked " + _date(k.revoked_at) if k.revoked_at else "active"
            print(f"{k.name}\t{'read-only' if k.read_only else 'full'}\tcreated {_date(k.created_at)}\t{state}")
        return 0
    if not await revoke_key(db, args[0]):
        print(f"No active key named {args[0]}", file=sys.stderr)
        return 1
    print(f"Revoked API key {args[0]}")
    return 0


def _date(ts: int) -> str:
    return f"{datetime.fromtimestamp(ts, tz=timezone.utc):%Y-%m-%d %H:%M} UTC"


def run_sandbox_reset(args: list[str]) -> int:
    url = database_url()
    if url is None:
        return 2
    if args:
        print("usage: python -m bot sandbox-reset   (writes off all test money the sandbox credited)",
              file=sys.stderr)
        return 2
    return asyncio.run(_with_database(url, _sandbox_reset))


async def _sandbox_reset(db: Database) -> int:
    reversed_ = await test_money.reset(db)
    if not reversed_:
        print("No test money to write off.")
        return 0
    for user_id, cents in reversed_:
        print(f"user {user_id}: {format_usd(-cents)} of test money written off")
    print(f"Wrote off the test money of {len(reversed_)} user(s); each line is in the ledger and in /audit.")
    return 0
