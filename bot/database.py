"""Opening the database at start-up: whatever the engine refuses becomes one line naming DATABASE_URL."""
from __future__ import annotations

from bot.config import ConfigError
from services.store import Database
from services.store.db import DatabaseUnreachable, DatabaseURL, SchemaTooNew


async def open_database(url: DatabaseURL) -> Database:
    """The database, created and migrated; one that can't be opened (or that newer code migrated further) is a
    ConfigError naming DATABASE_URL, never with its password."""
    db = Database(url)
    try:
        await db.connect()
    except (SchemaTooNew, DatabaseUnreachable) as exc:
        await db.close()
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any engine's refusal becomes one line (the URL may hold a password)
        await db.close()
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if db.dialect == "sqlite":
            raise ConfigError(f"DATABASE_URL: cannot open the database {url.path} ({reason}); point it at a file "
                              "the bot may create and write, e.g. sqlite:///data/bot.sqlite3") from None
        raise ConfigError(f"DATABASE_URL: cannot use the database {url.safe()} ({reason})") from None
    return db
