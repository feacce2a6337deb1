"""Language choice: kept on the user's record, applied from the next message on (and to this one)."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, Message

from handlers.i18n import Locales, Translator
from handlers.ui import views
from handlers.ui.callbacks import LanguageCb, MenuAction, MenuCb
from handlers.user.filters import PRIVATE, PRIVATE_CALLBACK
from services.store import Database, User
from services.store import users
from services.topup import TopupService


def _choices(locales: Locales) -> list[tuple[str, str]]:
    return [(code, locales.get(code)("language.name")) for code in locales.available]


async def language_command(message: Message, t: Translator, locales: Locales) -> None:
    await message.answer(t("language.pick"), reply_markup=views.language_keyboard(t, _choices(locales), t.locale))


async def language_button(cb: CallbackQuery, t: Translator, locales: Locales) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.edit_text(t("language.pick"),
                                   reply_markup=views.language_keyboard(t, _choices(locales), t.locale))


async def choose_language(cb: CallbackQuery, callback_data: LanguageCb, user: User, t: Translator,
                          locales: Locales, db: Database, topup: TopupService) -> None:
    if callback_data.code not in locales.available:
        await cb.answer(t("stale"))
        return
    async with db.transaction() as tx:
        await users.set_locale(tx, user.id, callback_data.code)
    t = locales.get(callback_data.code)
    await cb.answer(t("language.changed"))
    if isinstance(cb.message, Message):
        sandbox = topup.gateway.is_sandbox
        await cb.message.edit_text(views.start_text(t, user.first_name, user.balance_shown(sandbox=sandbox), sandbox),
                                   reply_markup=views.main_menu(t))


def build_router() -> Router:
    router = Router(name="language")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(language_command, Command("language"))
    router.callback_query.register(language_button, MenuCb.filter(F.action == MenuAction.LANGUAGE))
    router.callback_query.register(choose_language, LanguageCb.filter())
    return router
