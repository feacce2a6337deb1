"""Per-update context: the user's record and a translator in their language, put into handler data."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram import BaseMiddleware
from aiogram.types import TelegramObject
from aiogram.types import User as TelegramUser

from handlers.i18n import Locales
from services.store import Database, User
from services.store import users
from services.store.db import Conn


class UserContextMiddleware(BaseMiddleware):
    """Registers or refreshes the sender, then injects `user` and `t`: their translator, or in the admin chat the
    admin chat's (ADMIN_LOCALE), so staff with different Telegram languages read one language there."""

    def __init__(self, db: Database, locales: Locales, *, admin_chat_id: int | None = None) -> None:
        self._db = db
        self._locales = locales
        self._admin_chat_id = admin_chat_id

    async def __call__(self, handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
                       event: TelegramObject, data: dict[str, Any]) -> Any:
        sender: TelegramUser | None = data.get("event_from_user")
        chat = data.get("event_chat")
        in_admin_chat = chat is not None and self._admin_chat_id is not None and chat.id == self._admin_chat_id
        if sender is None or sender.is_bot:
            # No record for bots (an anonymous group admin speaks as one), but they can still be answered.
            data["t"] = self._locales.for_admin() if in_admin_chat else self._locales.get(self._locales.default)
            return await handler(event, data)
        user = await users.get(self._db.reader, sender.id)
        if user is None or (user.username, user.first_name, user.telegram_lang) != (
                sender.username, sender.first_name or "", sender.language_code):
            # Written only when something changed, so an ordinary update costs one read.
            async def record(tx: Conn) -> User | None:
                await users.upsert(tx, sender.id, sender.username, sender.first_name or "", sender.language_code)
                return await users.get(tx, sender.id)

            user = await self._db.run(record)
        assert user is not None
        data["user"] = user
        data["t"] = (self._locales.for_admin() if in_admin_chat
                     else self._locales.get(self._locales.pick(user.locale, user.telegram_lang)))
        return await handler(event, data)
