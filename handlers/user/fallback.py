"""Whatever no other router took: buttons from old or foreign messages, and stray private messages."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.types import CallbackQuery, Message

from bot.i18n import Translator
from handlers.ui import views

router = Router(name="fallback")


@router.callback_query()
async def stale_button(cb: CallbackQuery, t: Translator) -> None:
    await cb.answer(t("stale"))


@router.message(F.chat.type == "private")
async def unknown_message(message: Message, t: Translator) -> None:
    await message.answer(t("unknown"), reply_markup=views.main_menu(t))
