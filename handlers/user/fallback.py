"""Whatever no other router took: buttons from old or foreign messages, and stray private messages."""
from __future__ import annotations

from aiogram import Router
from aiogram.types import CallbackQuery, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.user.filters import PRIVATE


async def stale_button(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer(t("stale"))


async def unknown_message(message: Message, t: Translator) -> None:
    await message.answer(t("unknown"), reply_markup=views.main_menu(t))


def build_router() -> Router:
    router = Router(name="fallback")
    router.callback_query.register(stale_button)
    router.message.register(unknown_message, PRIVATE)
    return router
