"""`python -m bot backup [FILE]`: a consistent copy of the SQLite database, safe to take while the bot runs.

SQLite's online backup API copies the database as one snapshot (a read transaction), so the copy never mixes pages
from before and after a commit, and the running bot keeps writing meanwhile (WAL: readers don't block the writer).
Copying the file with `cp` is not safe: the newest commits may still sit in the -wal file beside it.
"""
from __future__ import annotations

import os
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

from services.store.db import path_from_url

USAGE = """usage: python -m bot backup [FILE]
  Copies the SQLite database named by DATABASE_URL into FILE (default: backups/<name>-<UTC time>.sqlite3 beside
  the database), consistently, while the bot keeps running. Restore: stop the bot, put the copy in place of the
  database file (and delete any -wal and -shm files beside it), start the bot.
  On PostgreSQL use pg_dump instead (see the README, "Back up and restore")."""


def run_backup(args: list[str]) -> int:
    if len(args) > 1 or args[:1] in (["-h"], ["--help"]):
        print(USAGE, file=sys.stderr)
        return 2
    url = os.environ.get("DATABASE_URL", "sqlite:///data/bot.sqlite3").strip()
    if url.startswith(("postgres://", "postgresql://")):
        print("Not backed up: DATABASE_URL is PostgreSQL; use pg_dump (see the README, \"Back up and restore\")",
              file=sys.stderr)
        return 2
    try:
        source = path_from_url(url)
    except ValueError as exc:
        print(f"Configuration error: DATABASE_URL: {exc}", file=sys.stderr)
        return 2
    if not source.is_file():
        print(f"Not backed up: there is no database at {source} (DATABASE_URL)", file=sys.stderr)
        return 1
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    target = Path(args[0]) if args else source.parent / "backups" / f"{source.stem}-{stamp}.sqlite3"
    if target.exists():
        print(f"Not backed up: {target} exists already; name another file", file=sys.stderr)
        return 1
    summary = backup_sqlite(source, target)
    print(f"Backed up {source} to {target}: {summary}")
    return 0


def backup_sqlite(source: Path, target: Path) -> str:
    """Copy `source` into `target` in one snapshot, check the copy, and only then give it its name."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    partial.unlink(missing_ok=True)
    src = sqlite3.connect(source, timeout=30)  # only read; a busy writer is waited for, never interrupted
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)  # all pages in one step: one read snapshot, so the copy is one consistent moment
        check = dst.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise RuntimeError(f"the copy failed its integrity check: {check}")
        version = dst.execute("PRAGMA user_version").fetchone()[0]
        users, ledger_lines = dst.execute(
            "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM ledger)").fetchone()
    finally:
        dst.close()
        src.close()
    partial.replace(target)  # a half-written copy never carries the final name
    return f"schema version {version}, {users} users, {ledger_lines} ledger lines, {target.stat().st_size} bytes"
