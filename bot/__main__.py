"""`python -m bot`: read .env and the environment, check the settings, run the bot with long polling."""
from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from dotenv import load_dotenv

from bot.config import ConfigError, load_settings
from handlers.i18n import shipped_locales


def main() -> int:
    args = sys.argv[1:]
    if args[:1] in (["--help"], ["-h"], ["help"]):
        from bot.usage import usage

        print(usage())
        return 0
    # .env in the directory the bot is started from; a real environment variable wins over it.
    load_dotenv(Path.cwd() / ".env")
    if args[:1] == ["coupons"]:
        from bot.cli import run_coupons

        return run_coupons(args[1:])
    if args[:1] == ["backup"]:
        from bot.backup import run_backup

        return run_backup(args[1:])
    if args[:1] == ["copy-to-postgres"]:
        from bot.cli import run_copy_to_postgres

        return run_copy_to_postgres(args[1:])
    if args[:1] == ["migrate"]:
        from bot.cli import run_migrate

        return run_migrate(args[1:])
    if args[:1] == ["api-keys"]:
        from bot.cli import run_api_keys

        return run_api_keys(args[1:])
    if args[:1] == ["sandbox-reset"]:
        from bot.cli import run_sandbox_reset

        return run_sandbox_reset(args[1:])
    if args:
        print(f"Unknown command {args[0]!r}; `python -m bot --help` lists the commands and settings", file=sys.stderr)
        return 2
    try:
        settings = load_settings(os.environ, available_locales=shipped_locales())
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiohttp's access log and aiogram's event log would print every update; keep the useful parts.
    logging.getLogger("aiogram.event").setLevel(logging.WARNING)
    from aiogram.exceptions import TelegramNetworkError, TelegramUnauthorizedError

    from bot.app import run  # imported late so a config error prints before heavy imports

    try:
        asyncio.run(run(settings))
    except KeyboardInterrupt:
        pass
    except ConfigError as exc:  # found only when the bot tried: a server, the database file, the port
        print(f"Configuration error: {exc}", file=sys.stderr)
        return 2
    except TelegramUnauthorizedError:
        print("Configuration error: Telegram refused BOT_TOKEN; copy the token again from @BotFather "
              "(/mybots, API Token) into .env", file=sys.stderr)
        return 2
    except TelegramNetworkError as exc:
        print(f"Cannot reach the Telegram Bot API at {settings.telegram_api_url} ({exc.message}); check the "
              "network or TELEGRAM_API_URL", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
