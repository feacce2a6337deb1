"""Buttons on a deposit card: check status, cancel, and (sandbox) simulate the payment."""
from __future__ import annotations

from contextlib import suppress

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import DepositAction, DepositCb
from handlers.user.filters import PRIVATE_CALLBACK
from handlers.user.topup import TopupFlow, send_deposit_card
from services.coupons import promised_bonus
from services.store import Deposit, DepositStatus, User
from services.topup import TopupError, TopupProblem, TopupService


async def deposit_button(cb: CallbackQuery, callback_data: DepositCb, state: FSMContext, user: User,
                         t: Translator, topup: TopupService, support_contact: str | None) -> None:
    if callback_data.action is DepositAction.CANCEL and await topup.abandon_creation(user.id, callback_data.deposit_id):
        # Cancelled while the gateway was still creating it: whatever the gateway makes now is never shown.
        await abandoned(cb.message, state, t, callback_data.deposit_id)
        await cb.answer()
        return
    try:
        if callback_data.action is DepositAction.CHECK:
            deposit = (await topup.check_status(user.id, callback_data.deposit_id)).deposit
            toast = t(f"deposit.check.{deposit.status.value}")
        elif callback_data.action is DepositAction.SHOW:
            deposit = await topup.deposit_of(user.id, callback_data.deposit_id)
            if deposit.status is not DepositStatus.PENDING or not isinstance(cb.message, Message):
                await cb.answer(t(f"deposit.check.{deposit.status.value}"))
                return
            await cb.answer()
            await send_deposit_card(cb.message, t, topup, deposit)
            return
        elif callback_data.action is DepositAction.CANCEL:
            deposit = await topup.cancel(user.id, callback_data.deposit_id)
            toast = t("deposit.cancelled-toast")
        else:
            await topup.simulate_payment(user.id, callback_data.deposit_id)
            deposit = await topup.deposit_of(user.id, callback_data.deposit_id)
            toast = t("deposit.simulated-toast")
    except TopupError as exc:
        if exc.problem is TopupProblem.NOT_PENDING:
            await cb.answer(t("deposit.not-pending"), show_alert=True)
            await _refresh(cb, t, topup, await topup.deposit_of(user.id, callback_data.deposit_id))
        elif exc.problem is TopupProblem.TEMPORARILY_UNAVAILABLE:
            await cb.answer(t("deposit.check-failed") + views.support_line(t, support_contact), show_alert=True)
        else:  # not theirs, unknown, or sandbox-only on a real gateway: all look the same from outside
            await cb.answer(t("stale"))
        return
    await cb.answer(toast)
    await _refresh(cb, t, topup, deposit)


async def _refresh(cb: CallbackQuery, t: Translator, topup: TopupService, deposit: Deposit) -> None:
    """Bring the card up to date; unchanged cards are left alone."""
    if not isinstance(cb.message, Message) or cb.message.message_id != deposit.message_id:
        return
    sandbox = topup.gateway.is_sandbox
    bonus = await promised_bonus(topup.db.reader, deposit)
    text = views.deposit_caption(t, deposit, sandbox=sandbox, bonus_cents=bonus)
    keyboard = views.deposit_keyboard(t, deposit, sandbox=sandbox)
    try:
        if deposit.is_link:  # a text card, not a photo
            await cb.message.edit_text(text, reply_markup=keyboard)
        else:
            await cb.message.edit_caption(caption=text, reply_markup=keyboard)
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:
            raise


async def abandoned(message: object, state: FSMContext, t: Translator, deposit_id: int) -> None:
    """Say that the deposit being created was cancelled, and end the flow that waited for it."""
    data = await state.get_data()
    if await state.get_state() == TopupFlow.creating.state and data.get("creating") == deposit_id:
        await state.clear()
    if isinstance(message, Message):
        with suppress(TelegramBadRequest):
            await message.edit_text(t("confirm.abandoned"), reply_markup=views.main_menu(t))


def build_router() -> Router:
    router = Router(name="deposit")
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.callback_query.register(deposit_button, DepositCb.filter())
    return router
