"""Balance: the ledger's sum, as the user sees it."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from bot.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import MenuAction, MenuCb
from handlers.user.filters import PRIVATE, PRIVATE_CALLBACK
from services.money import format_usd
from services.store import User

router = Router(name="balance")
router.message.filter(PRIVATE)
router.callback_query.filter(PRIVATE_CALLBACK)


def _keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=t("menu.topup"), callback_data=MenuCb(action=MenuAction.TOPUP).pack()),
         InlineKeyboardButton(text=t("menu.history"), callback_data=MenuCb(action=MenuAction.HISTORY).pack())],
        [views.home_button(t)],
    ])


@router.message(Command("balance"))
async def balance_command(message: Message, user: User, t: Translator) -> None:
    await message.answer(t("balance.text", balance=format_usd(user.balance_cents)), reply_markup=_keyboard(t))


@router.callback_query(MenuCb.filter(F.action == MenuAction.BALANCE))
async def balance_button(cb: CallbackQuery, user: User, t: Translator) -> None:
    await cb.answer()
    text = t("balance.text", balance=format_usd(user.balance_cents))
    if isinstance(cb.message, Message) and cb.message.text is not None:
        await cb.message.edit_text(text, reply_markup=_keyboard(t))
    elif isinstance(cb.message, Message):  # pressed under a photo or notification we keep: answer below it
        await cb.message.answer(text, reply_markup=_keyboard(t))
