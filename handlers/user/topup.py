"""The top-up conversation: coin → network → amount → coupon → confirm → deposit card.

One "flow message" is edited as the user moves through the steps; its id is kept in the FSM data,
and a button pressed on any other message is out of date. Every value from a button is checked
again against the matrix and the limits, because a client can send any callback data.
"""
from __future__ import annotations

import logging
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import AmountCb, CoinCb, FlowAction, FlowCb, LinkCb, MenuAction, MenuCb, NetworkCb
from handlers.ui.replies import replace_or_answer
from handlers.user.filters import NOT_COMMAND, PRIVATE, PRIVATE_CALLBACK
from services.coupons import CouponChoice, CouponError
from services.matrix import LINK_COIN, LINK_METHODS
from services.money import AmountError, AmountLimits, AmountProblem, check_limits, format_usd, parse_usd_within
from services.store import Deposit
from services.store import coupons as coupon_repo
from services.topup import TopupError, TopupProblem, TopupService

log = logging.getLogger(__name__)


class TopupFlow(StatesGroup):
    coin = State()
    network = State()
    amount = State()
    coupon = State()
    confirm = State()
    creating = State()


# --- entering the flow ---

async def topup_command(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    sent = await message.answer(t("topup.pick-coin"), reply_markup=_coins_keyboard(t, topup))
    await _start_flow(state, sent.message_id)


async def topup_button(cb: CallbackQuery, callback_data: MenuCb, state: FSMContext, t: Translator,
                       topup: TopupService) -> None:
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    shown = await replace_or_answer(cb.message, t("topup.pick-coin"), _coins_keyboard(t, topup),
                                    below=callback_data.below)
    await _start_flow(state, shown.message_id)


def _coins_keyboard(t: Translator, topup: TopupService) -> InlineKeyboardMarkup:
    return views.coins_keyboard(t, topup.matrix.coins(), topup.link_methods())


async def _start_flow(state: FSMContext, flow_message_id: int) -> None:
    await state.set_state(TopupFlow.coin)
    await state.set_data({"flow_msg": flow_message_id})


async def _on_flow_message(cb: CallbackQuery, state: FSMContext, t: Translator) -> dict[str, Any] | None:
    """The flow data if the button is on the current flow message; otherwise tell the user it's stale."""
    data = await state.get_data()
    if isinstance(cb.message, Message) and cb.message.message_id == data.get("flow_msg"):
        return data
    await cb.answer(t("stale"), show_alert=False)
    return None


# --- coin and network ---

async def pick_coin(cb: CallbackQuery, callback_data: CoinCb, state: FSMContext, t: Translator,
                    topup: TopupService) -> None:
    if await _on_flow_message(cb, state, t) is None:
        return
    networks = topup.matrix.networks(callback_data.coin)
    if not networks:
        await cb.answer(t("stale"))
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    if len(networks) == 1:
        await _ask_amount(cb.message, state, t, topup, callback_data.coin, networks[0], edit=True)
        return
    await state.update_data(coin=callback_data.coin)
    await state.set_state(TopupFlow.network)
    await cb.message.edit_text(t("topup.pick-network", coin=callback_data.coin),
                               reply_markup=views.networks_keyboard(t, callback_data.coin, networks))


async def pick_link(cb: CallbackQuery, callback_data: LinkCb, state: FSMContext, t: Translator,
                    topup: TopupService) -> None:
    """A payment page instead of a coin: straight to the amount."""
    if await _on_flow_message(cb, state, t) is None:
        return
    network = LINK_METHODS.get(callback_data.method)
    if network is None or topup.link_method(network) is None:
        await cb.answer(t("stale"))
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    await _ask_amount(cb.message, state, t, topup, LINK_COIN, network, edit=True)


async def pick_network(cb: CallbackQuery, callback_data: NetworkCb, state: FSMContext, t: Translator,
                       topup: TopupService) -> None:
    data = await _on_flow_message(cb, state, t)
    if data is None:
        return
    if data.get("coin") != callback_data.coin or not topup.matrix.has(callback_data.coin, callback_data.network):
        await cb.answer(t("stale"))
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    await _ask_amount(cb.message, state, t, topup, callback_data.coin, callback_data.network, edit=True)


async def _ask_amount(message: Message, state: FSMContext, t: Translator, topup: TopupService, coin: str,
                      network: str, *, edit: bool, prefix: str | None = None) -> None:
    await state.update_data(coin=coin, network=network)
    await state.set_state(TopupFlow.amount)
    limits = topup.limits_for(coin, network)
    text = views.amount_text(t, coin, network, limits.min_cents, limits.max_cents)
    coin_minimum = topup.coin_minimum(coin, network)
    if coin_minimum:
        text += "\n" + t("topup.coin-minimum", minimum=coin_minimum)
    keyboard = views.amount_keyboard(t, tuple(c for c in topup.quick_amounts_cents
                                              if limits.min_cents <= c <= limits.max_cents))
    await _show(message, state, f"{prefix}\n\n{text}" if prefix else text, keyboard, edit=edit)


async def _flow_limits(state: FSMContext, topup: TopupService) -> AmountLimits:
    data = await state.get_data()
    return topup.limits_for(str(data.get("coin")), str(data.get("network")))


async def _check_amount(state: FSMContext, topup: TopupService, cents: int) -> None:
    """What the amount must also be for the chosen method: payment pages take whole dollars."""
    data = await state.get_data()
    if topup.link_method(str(data.get("network"))) is not None and cents % 100:
        raise AmountError(AmountProblem.WHOLE_DOLLARS)


def _amount_error(t: Translator, problem: AmountProblem, limits: AmountLimits) -> str:
    return t(f"amount.error.{problem.value}", min=format_usd(limits.min_cents), max=format_usd(limits.max_cents))


# --- amount ---

async def pick_amount(cb: CallbackQuery, callback_data: AmountCb, state: FSMContext, t: Translator,
                      topup: TopupService) -> None:
    if await _on_flow_message(cb, state, t) is None:
        return
    try:
        check_limits(callback_data.cents, await _flow_limits(state, topup))
        await _check_amount(state, topup, callback_data.cents)
    except AmountError:
        await cb.answer(t("stale"))
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    await _ask_coupon(cb.message, state, t, callback_data.cents, edit=True)


async def type_amount(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    assert message.text is not None
    limits = await _flow_limits(state, topup)
    try:
        cents = parse_usd_within(message.text, limits)
        await _check_amount(state, topup, cents)
    except AmountError as exc:
        await message.answer(_amount_error(t, exc.problem, limits))
        return
    await _ask_coupon(message, state, t, cents, edit=False)


async def amount_not_text(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    await message.answer(_amount_error(t, AmountProblem.FORMAT, await _flow_limits(state, topup)))


# --- coupon ---

async def _ask_coupon(message: Message, state: FSMContext, t: Translator, amount_cents: int, *, edit: bool,
                      prefix: str | None = None) -> None:
    await state.update_data(amount_cents=amount_cents, coupon=None)
    await state.set_state(TopupFlow.coupon)
    text = t("topup.ask-coupon", amount=format_usd(amount_cents))
    await _show(message, state, f"{prefix}\n\n{text}" if prefix else text, views.coupon_keyboard(t), edit=edit)


async def type_coupon(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    assert message.text is not None and message.from_user is not None
    data = await state.get_data()
    try:
        choice = await topup.choose_coupon(user_id=message.from_user.id, code=message.text,
                                           amount_cents=int(data["amount_cents"]), network=str(data["network"]))
    except CouponError as exc:
        # The retry prompt becomes the flow message; buttons on the old one are now out of date.
        await _show(message, state, _coupon_error(t, exc), views.coupon_keyboard(t), edit=False)
        return
    await _show_confirm(message, state, t, topup, choice, edit=False)


async def coupon_not_text(message: Message, t: Translator) -> None:
    await message.answer(t("coupon.error.format"))


async def skip_coupon(cb: CallbackQuery, state: FSMContext, t: Translator, topup: TopupService) -> None:
    if await _on_flow_message(cb, state, t) is None:
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    await _show_confirm(cb.message, state, t, topup, None, edit=True)


def _coupon_error(t: Translator, exc: CouponError) -> str:
    return t(f"coupon.error.{exc.problem.value}", min=format_usd(exc.min_amount_cents or 0))


# --- confirm and create ---

async def _show_confirm(message: Message, state: FSMContext, t: Translator, topup: TopupService,
                        choice: CouponChoice | None, *, edit: bool, prefix: str | None = None) -> None:
    data = await state.get_data()
    await state.update_data(coupon=choice.to_state() if choice else None)
    await state.set_state(TopupFlow.confirm)
    text = views.confirm_text(t, coin=data["coin"], network=data["network"], amount_cents=int(data["amount_cents"]),
                              coupon=choice, sandbox=topup.gateway.is_sandbox)
    await _show(message, state, f"{prefix}\n\n{text}" if prefix else text, views.confirm_keyboard(t), edit=edit)


async def create_deposit(cb: CallbackQuery, state: FSMContext, t: Translator, topup: TopupService) -> None:
    data = await _on_flow_message(cb, state, t)
    if data is None:
        return
    assert isinstance(cb.message, Message) and cb.from_user is not None
    # Leave the confirm state first: a second tap (events are serialized per user) is now stale.
    await state.set_state(TopupFlow.creating)
    await cb.answer()
    await cb.message.edit_text(t("confirm.creating"))
    coupon = data.get("coupon") or {}
    try:
        deposit = await topup.create_deposit(
            user_id=cb.from_user.id, chat_id=cb.message.chat.id, coin=data["coin"], network=data["network"],
            amount_cents=int(data["amount_cents"]), coupon_code=coupon.get("code"),
            creating_message=(cb.message.chat.id, cb.message.message_id))
    except CouponError as exc:
        await _ask_coupon(cb.message, state, t, int(data["amount_cents"]), edit=True, prefix=_coupon_error(t, exc))
        return
    except AmountError as exc:
        limits = topup.limits_for(data["coin"], data["network"])
        await _ask_amount(cb.message, state, t, topup, data["coin"], data["network"], edit=True,
                          prefix=_amount_error(t, exc.problem, limits))
        return
    except TopupError as exc:
        if exc.problem is TopupProblem.AMOUNT_REJECTED:
            prefix = (t("topup.error.amount-min", minimum=exc.minimum) if exc.minimum
                      else t("topup.error.amount-max", maximum=exc.maximum or "?"))
            await _ask_amount(cb.message, state, t, topup, data["coin"], data["network"], edit=True, prefix=prefix)
            return
        if exc.problem in (TopupProblem.TOO_MANY_OPEN, TopupProblem.TOO_MANY_RECENT):
            await state.clear()
            key = "topup.error.too-many-open" if exc.problem is TopupProblem.TOO_MANY_OPEN \
                else "topup.error.too-many-recent"
            await cb.message.edit_text(t(key, limit=exc.limit or 0), reply_markup=views.main_menu(t))
            return
        if exc.problem is TopupProblem.PAIR_UNAVAILABLE:
            await state.set_state(TopupFlow.coin)
            await cb.message.edit_text(t("topup.error.pair-unavailable") + "\n\n" + t("topup.pick-coin"),
                                       reply_markup=_coins_keyboard(t, topup))
            return
        choice = await _choice_from_state(topup, coupon, int(data["amount_cents"]))
        await _show_confirm(cb.message, state, t, topup, choice, edit=True,
                            prefix=t("topup.error.temporarily-unavailable"))
        return
    await state.clear()
    await cb.message.edit_text(t("confirm.created", id=deposit.id))
    await send_deposit_card(cb.message, t, topup, deposit)


async def _choice_from_state(topup: TopupService, coupon: dict[str, Any], amount_cents: int) -> CouponChoice | None:
    """Rebuild the confirmation's coupon line after a failed attempt; creating again re-validates it."""
    if not coupon.get("code"):
        return None
    found = await coupon_repo.get(topup.db.reader, int(coupon["coupon_id"])) if coupon.get("coupon_id") else None
    return CouponChoice(code=str(coupon["code"]), coupon=found,
                        bonus_cents=found.bonus_for(amount_cents) if found else None)


async def send_deposit_card(message: Message, t: Translator, topup: TopupService, deposit: Deposit) -> None:
    sandbox = topup.gateway.is_sandbox
    if deposit.is_link:  # nothing to scan: the card is the link and what happens next
        card = await message.answer(views.deposit_caption(t, deposit, sandbox=sandbox),
                                    reply_markup=views.deposit_keyboard(t, deposit, sandbox=sandbox))
        await topup.attach_message(deposit.id, card.chat.id, card.message_id)
        return
    assert deposit.address is not None
    card = await message.answer_photo(
        BufferedInputFile(views.qr_png(deposit.address), filename=f"deposit-{deposit.id}.png"),
        caption=views.deposit_caption(t, deposit, sandbox=sandbox),
        reply_markup=views.deposit_keyboard(t, deposit, sandbox=sandbox))
    await topup.attach_message(deposit.id, card.chat.id, card.message_id)


# --- back and cancel ---

async def back(cb: CallbackQuery, state: FSMContext, t: Translator, topup: TopupService) -> None:
    data = await _on_flow_message(cb, state, t)
    if data is None:
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    current = await state.get_state()
    coin = data.get("coin")
    if current == TopupFlow.network.state or (current == TopupFlow.amount.state
                                               and len(topup.matrix.networks(str(coin))) <= 1):
        await state.set_state(TopupFlow.coin)
        await cb.message.edit_text(t("topup.pick-coin"), reply_markup=_coins_keyboard(t, topup))
    elif current == TopupFlow.amount.state:
        await state.set_state(TopupFlow.network)
        await cb.message.edit_text(t("topup.pick-network", coin=coin),
                                   reply_markup=views.networks_keyboard(t, str(coin), topup.matrix.networks(str(coin))))
    elif current == TopupFlow.coupon.state:
        await _ask_amount(cb.message, state, t, topup, str(coin), str(data.get("network")), edit=True)
    elif current == TopupFlow.confirm.state:
        await _ask_coupon(cb.message, state, t, int(data["amount_cents"]), edit=True)


async def cancel_flow(cb: CallbackQuery, state: FSMContext, t: Translator) -> None:
    if await _on_flow_message(cb, state, t) is None:
        return
    await state.clear()
    await cb.answer()
    assert isinstance(cb.message, Message)
    await cb.message.edit_text(t("flow.cancelled"), reply_markup=views.main_menu(t))


async def _show(message: Message, state: FSMContext, text: str, keyboard: InlineKeyboardMarkup, *,
                edit: bool) -> None:
    """Edit the flow message in place, or send a new one (after the user typed) and make it the flow message."""
    if edit:
        await message.edit_text(text, reply_markup=keyboard)
        return
    sent = await message.answer(text, reply_markup=keyboard)
    await state.update_data(flow_msg=sent.message_id)


def build_router() -> Router:
    router = Router(name="topup")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(topup_command, Command("topup"))
    router.callback_query.register(topup_button, MenuCb.filter(F.action == MenuAction.TOPUP))
    router.callback_query.register(pick_coin, TopupFlow.coin, CoinCb.filter())
    router.callback_query.register(pick_link, TopupFlow.coin, LinkCb.filter())
    router.callback_query.register(pick_network, TopupFlow.network, NetworkCb.filter())
    router.callback_query.register(pick_amount, TopupFlow.amount, AmountCb.filter())
    router.message.register(type_amount, TopupFlow.amount, F.text, NOT_COMMAND)
    router.message.register(amount_not_text, TopupFlow.amount, NOT_COMMAND)
    router.message.register(type_coupon, TopupFlow.coupon, F.text, NOT_COMMAND)
    router.message.register(coupon_not_text, TopupFlow.coupon, NOT_COMMAND)
    router.callback_query.register(skip_coupon, TopupFlow.coupon, FlowCb.filter(F.action == FlowAction.SKIP_COUPON))
    router.callback_query.register(create_deposit, TopupFlow.confirm, FlowCb.filter(F.action == FlowAction.CREATE))
    router.callback_query.register(back, FlowCb.filter(F.action == FlowAction.BACK))
    router.callback_query.register(cancel_flow, FlowCb.filter(F.action == FlowAction.CANCEL))
    return router
