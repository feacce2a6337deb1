"""/help in the admin chat, the second-tap callback, and the short refusal for everyone else there."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, Message

from handlers.admin_access import AdminAccess
from handlers.i18n import Translator
from handlers.admin.confirm import ConfirmCb, on_confirm
from handlers.in_loop import InLoop

# Staff commands are answered in groups; in private the customer routers answer.
IN_GROUP = InLoop(F.chat.type != "private")


async def admin_help(message: Message, t: Translator) -> None:
    await message.answer(t("admin.help"))


async def refuse(message: Message, t: Translator, admin_access: AdminAccess) -> None:
    """Outsiders typing admin commands in the admin chat learn nothing but that they may not."""
    if admin_access.admin_chat_id is not None and message.chat.id == admin_access.admin_chat_id:
        await message.reply(t("admin.refused"))


def build_router() -> Router:
    router = Router(name="admin-core")
    router.message.register(admin_help, Command("help", "start"), IN_GROUP)
    router.callback_query.register(on_confirm, ConfirmCb.filter())
    return router


async def refuse_tap(cb: CallbackQuery, t: Translator) -> None:
    """Someone else pressing an admin's button (Confirm, Recheck, Refresh) is told why nothing happens."""
    await cb.answer(t("admin.refused"), show_alert=True)


def build_refusal_router(commands: tuple[str, ...], buttons: tuple[type[CallbackData], ...]) -> Router:
    router = Router(name="admin-refusal")
    router.message.register(refuse, Command(*commands), IN_GROUP)
    for button in buttons:
        router.callback_query.register(refuse_tap, button.filter())
    return router
