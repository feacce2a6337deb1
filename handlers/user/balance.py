"""Balance: the ledger's sum, as the user sees it."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import MenuAction, MenuCb
from handlers.ui.replies import replace_or_answer
from handlers.user.filters import PRIVATE, PRIVATE_CALLBACK
from services.money import format_usd
from services.store import User
from services.topup import TopupService


def _keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=t("menu.topup"), callback_data=MenuCb(action=MenuAction.TOPUP).pack()),
         InlineKeyboardButton(text=t("menu.history"), callback_data=MenuCb(action=MenuAction.HISTORY).pack())],
        [views.home_button(t)],
    ])


def _text(t: Translator, user: User, topup: TopupService) -> str:
    return t("balance.text", balance=format_usd(user.balance_shown(sandbox=topup.gateway.is_sandbox)))


async def balance_command(message: Message, user: User, t: Translator, topup: TopupService) -> None:
    await message.answer(_text(t, user, topup), reply_markup=_keyboard(t))


async def balance_button(cb: CallbackQuery, callback_data: MenuCb, user: User, t: Translator,
                         topup: TopupService) -> None:
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    await replace_or_answer(cb.message, _text(t, user, topup), _keyboard(t), below=callback_data.below)


def build_router() -> Router:
    router = Router(name="balance")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(balance_command, Command("balance"))
    router.callback_query.register(balance_button, MenuCb.filter(F.action == MenuAction.BALANCE))
    return router
