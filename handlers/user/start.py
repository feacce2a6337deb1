"""/start, /help, /cancel and the main menu."""
from __future__ import annotations

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import MenuAction, MenuCb
from handlers.user.filters import PRIVATE, PRIVATE_CALLBACK
from services.links import LinkRefused, Linker, looks_like_token
from services.money import format_usd
from services.store import User
from services.topup import TopupService


async def start(message: Message, state: FSMContext, user: User, t: Translator, topup: TopupService,
                command: CommandObject, linker: Linker) -> None:
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


async def cancel(message: Message, state: FSMContext, t: Translator) -> None:
    had_flow = await state.get_state() is not None
    await state.clear()
    await message.answer(t("flow.cancelled" if had_flow else "flow.nothing-to-cancel"), reply_markup=views.main_menu(t))


async def help_command(message: Message, t: Translator, topup: TopupService) -> None:
    await message.answer(help_text(t, topup), reply_markup=views.back_home_keyboard(t))


async def home(cb: CallbackQuery, state: FSMContext, user: User, t: Translator, topup: TopupService) -> None:
    await state.clear()
    await cb.answer()
    if isinstance(cb.message, Message):
        sandbox = topup.gateway.is_sandbox
        await cb.message.edit_text(views.start_text(t, user.first_name, user.balance_shown(sandbox=sandbox), sandbox),
                                   reply_markup=views.main_menu(t))


async def help_button(cb: CallbackQuery, t: Translator, topup: TopupService) -> None:
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.edit_text(help_text(t, topup), reply_markup=views.back_home_keyboard(t))


def help_text(t: Translator, topup: TopupService) -> str:
    return t("help.text", min=format_usd(topup.limits.min_cents), max=format_usd(topup.limits.max_cents))


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
