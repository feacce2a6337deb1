"""The second tap: every money move waits for the same admin to press Confirm within CONFIRM_SECONDS."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from handlers.i18n import Translator
from services.admin import Actor, AdminError, AdminService, PendingAction
from services.money import format_usd

# What to run once an action is confirmed: registered by the feature modules, keyed by action name.
Executor = Callable[[PendingAction, Actor, Translator, dict[str, Any]], Awaitable[str]]
EXECUTORS: dict[str, Executor] = {}


def executes(action: str) -> Callable[[Executor], Executor]:
    def register(executor: Executor) -> Executor:
        EXECUTORS[action] = executor
        return executor
    return register


class ConfirmCb(CallbackData, prefix="ac"):
    token: str
    yes: bool


def actor_of(event: Message | CallbackQuery) -> Actor:
    user = event.from_user
    assert user is not None
    return Actor(user.id, f"@{user.username}" if user.username else user.full_name)


async def ask(message: Message, t: Translator, admin: AdminService, action: str, payload: dict[str, Any],
              summary: str) -> None:
    """Reply with what will happen and Confirm/Cancel buttons that only this admin can use."""
    token = await admin.ask(actor_of(message), action, payload)
    keyboard = InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=t("admin.confirm.yes"), callback_data=ConfirmCb(token=token, yes=True).pack()),
        InlineKeyboardButton(text=t("admin.confirm.no"), callback_data=ConfirmCb(token=token, yes=False).pack()),
    ]])
    await message.reply(t("admin.confirm.ask", summary=summary, seconds=admin.confirm_seconds), reply_markup=keyboard)


async def on_confirm(cb: CallbackQuery, callback_data: ConfirmCb, t: Translator, admin: AdminService,
                     **data: Any) -> None:
    actor = actor_of(cb)
    try:
        pending = await admin.pending(callback_data.token, actor)
    except AdminError as exc:
        await cb.answer(t(f"admin.error.{exc.problem.value}"), show_alert=True)
        return
    if not callback_data.yes:
        await admin.take(pending, actor)
        await cb.answer()
        if isinstance(cb.message, Message):
            await cb.message.edit_text(t("admin.confirm.cancelled"))
        return
    executor = EXECUTORS.get(pending.action)
    if executor is None:
        await cb.answer(t("admin.error.confirm-unknown"), show_alert=True)
        return
    try:
        result = await executor(pending, actor, t, {**data, "admin": admin})
    except AdminError as exc:
        result = t(f"admin.error.{exc.problem.value}", **_display(exc.details))
    await cb.answer()
    if isinstance(cb.message, Message):
        await cb.message.edit_text(result)


def _display(details: dict[str, Any]) -> dict[str, Any]:
    return {key: format_usd(value) if key == "balance" else value for key, value in details.items()}
