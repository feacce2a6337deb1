"""The gate in front of every admin router."""
from __future__ import annotations

from aiogram import Bot
from aiogram.filters import BaseFilter
from aiogram.types import CallbackQuery, Message

from handlers.admin_access import AdminAccess


class IsAdmin(BaseFilter):
    async def __call__(self, event: Message | CallbackQuery, bot: Bot, admin_access: AdminAccess) -> bool:
        message = event.message if isinstance(event, CallbackQuery) else event
        user = event.from_user
        if user is None or message is None:
            return False
        return await admin_access.allowed(bot, message.chat.id, message.chat.type, user.id)
