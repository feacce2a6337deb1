"""/start, /help, /cancel and the main menu."""
from __future__ import annotations

from contextlib import suppress

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import MenuAction, MenuCb
from handlers.user.filters import PRIVATE, PRIVATE_CALLBACK
from handlers.user.topup import TopupFlow, close_flow_message
from services.links import LinkRefused, Linker, looks_like_token
from services.store import User
from services.topup import TopupService


async def start(message: Message, state: FSMContext, user: User, t: Translator, topup: TopupService,
                command: CommandObject, linker: Linker) -> None:
    # A deposit being created carries on (its card will follow); any other open flow is retired visibly.
    await close_flow_message(message.bot, message.chat.id, state, t("flow.cancelled"))
    await state.clear()
    if command.args and looks_like_token(command.args):
        await message.answer(await _bind(command.args, user, t, linker))
    sandbox = topup.gateway.is_sandbox
    await message.answer(views.start_text(t, user.first_name, user.balance_shown(sandbox=sandbox), sandbox),
                         reply_markup=views.main_menu(t))


async def _bind(token: str, user: User, t: Translator, linker: Linker) -> str:
    """An account link from the operator's service (/start <token>): bind, or say why not, in the user's language."""
    result = await linker.bind(token, user.id, actor_name=f"@{user.username}" if user.username else user.first_name)
    if isinstance(result, LinkRefused):
        return t(f"link.{result.value}")
    return t("link.bound-again" if result.replaced not in (None, result.external_id) else "link.bound",
             account=result.external_id)


async def cancel(message: Message, state: FSMContext, user: User, t: Translator, topup: TopupService) -> None:
    current = await state.get_state()
    data = await state.get_data()
    had_flow = current is not None
    if current == TopupFlow.creating.state and data.get("creating"):
        # Cancelled while the gateway is still creating it: said in the store, honoured when the gateway answers.
        if await topup.abandon_creation(user.id, int(data["creating"])) and data.get("flow_msg") and message.bot:
            with suppress(TelegramBadRequest):
                await message.bot.edit_message_text(t("confirm.abandoned"), chat_id=message.chat.id,
                                                    message_id=int(data["flow_msg"]), reply_markup=None)
    else:
        await close_flow_message(message.bot, message.chat.id, state, t("flow.cancelled"))
    await state.clear()
    await message.answer(t("flow.cancelled" if had_flow else "flow.nothing-to-cancel"), reply_markup=views.main_menu(t))


async def help_command(message: Message, t: Translator, topup: TopupService, support_contact: str | None) -> None:
    await message.answer(help_text(t, topup, support_contact), reply_markup=views.back_home_keyboard(t))


async def home(cb: CallbackQuery, user: User, t: Translator, topup: TopupService) -> None:
    # An open top-up stays open: the menu is shown here, the flow's own message keeps its buttons.
    await cb.answer()
    if isinstance(cb.message, Message):
        sandbox = topup.gateway.is_sandbox
        await cb.message.edit_text(views.start_text(t, user.first_name, user.balance_shown(sandbox=sandbox), sandbox),
                                   reply_markup=views.main_menu(t))


async def help_button(cb: CallbackQuery, t: Translator, topup: TopupService, support_contact: str | None) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.edit_text(help_text(t, topup, support_contact), reply_markup=views.back_home_keyboard(t))


def help_text(t: Translator, topup: TopupService, support_contact: str | None) -> str:
    return (t("help.text", min=t.usd(topup.limits.min_cents), max=t.usd(topup.limits.max_cents))
            + views.support_line(t, support_contact))


def build_router() -> Router:
    router = Router(name="start")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(start, CommandStart())
    router.message.register(cancel, Command("cancel"))
    router.message.register(help_command, Command("help"))
    router.callback_query.register(home, MenuCb.filter(F.action == MenuAction.HOME))
    router.callback_query.register(help_button, MenuCb.filter(F.action == MenuAction.HELP))
    return router
