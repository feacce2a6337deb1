"""`python -m bot --help`: the commands, and every setting with its default and meaning (read from .env.example)."""
from __future__ import annotations

from pathlib import Path

ENV_EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"

COMMANDS = """\
Commands:
  python -m bot                     run the bot: long polling, or Telegram's webhook with TELEGRAM_WEBHOOK=true
  python -m bot coupons ...         add, list, disable or enable the bot's coupons, without Telegram
                                    (python -m bot coupons alone prints examples)
  python -m bot backup [FILE]       a consistent copy of the SQLite database, safe while the bot runs
                                    (default: backups/ beside the database)
  python -m bot migrate             bring the database schema up to date and stop (before starting instances)
  python -m bot copy-to-postgres [SQLITE_FILE]
                                    copy the SQLite database into the empty PostgreSQL one DATABASE_URL names
  python -m bot api-keys create NAME [--read-only] | list | revoke NAME
                                    keys for the operator API (/api/v1); a new key is printed once, only its
                                    hash is kept
  python -m bot sandbox-reset       write off the sandbox's test money with audited reversing lines
  python -m bot --help              this text"""

SETTINGS_INTRO = """\
Settings: environment variables, or NAME=value lines in a .env file in the directory you start the bot from
(a real environment variable wins). All are checked at start-up; a wrong one stops the bot with one line."""


def usage(env_example: Path = ENV_EXAMPLE) -> str:
    parts = ["Top-up bot: a self-hosted Telegram bot for crypto balance top-ups.", "", COMMANDS, "", SETTINGS_INTRO]
    try:
        text = env_example.read_text(encoding="utf-8")
    except OSError:
        return "\n".join([*parts, "", f"(the list of settings is in .env.example, not found at {env_example})"])
    for comment, variables in setting_blocks(text):
        parts.append("")
        for name, default in variables:
            parts.append(f"  {name}" + (f"  (default: {default})" if default else ""))
        parts += [f"      {line}" for line in comment]
    return "\n".join(parts)


def setting_blocks(text: str) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """Groups of variables with the comment above them, as .env.example writes them."""
    blocks: list[tuple[list[str], list[tuple[str, str]]]] = []
    comment: list[str] = []
    variables: list[tuple[str, str]] = []
    for line in [*text.splitlines(), ""]:
        line = line.strip()
        if line.startswith("#"):
            if variables:
                blocks.append((comment, variables))
                comment, variables = [], []
            comment.append(line.lstrip("#").strip())
        elif "=" in line:
            name, _, default = line.partition("=")
            variables.append((name.strip(), default.strip()))
        else:
            if variables:
                blocks.append((comment, variables))
            comment, variables = [], []
    return blocks
