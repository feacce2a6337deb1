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
from services.store import Database, User
from services.store import deposits
from services.topup import TopupService


def _keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[
        [InlineKeyboardButton(text=t("menu.topup"), callback_data=MenuCb(action=MenuAction.TOPUP).pack()),
         InlineKeyboardButton(text=t("menu.history"), callback_data=MenuCb(action=MenuAction.HISTORY).pack())],
        [views.home_button(t)],
    ])


async def balance_text(t: Translator, user: User, topup: TopupService, db: Database) -> str:
    """The balance, and how many deposits still wait for payment: money on its way is worth a mention."""
    text = t("balance.text", balance=t.usd(user.balance_shown(sandbox=topup.gateway.is_sandbox)))
    waiting = await deposits.count_waiting_for_user(db.reader, user.id)
    return text + ("\n" + t("balance.pending", count=waiting) if waiting else "")


async def balance_command(message: Message, user: User, t: Translator, topup: TopupService, db: Database) -> None:
    await message.answer(await balance_text(t, user, topup, db), reply_markup=_keyboard(t))


async def balance_button(cb: CallbackQuery, callback_data: MenuCb, user: User, t: Translator, topup: TopupService,
                         db: Database) -> None:
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    await replace_or_answer(cb.message, await balance_text(t, user, topup, db), _keyboard(t),
                            below=callback_data.below)


def build_router() -> Router:
    router = Router(name="balance")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(balance_command, Command("balance"))
    router.callback_query.register(balance_button, MenuCb.filter(F.action == MenuAction.BALANCE))
    return router
