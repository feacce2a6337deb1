"""The top-up conversation: coin → network → amount → confirm (coupon optional) → deposit card.

One "flow message" is edited as the user moves through the steps; its id is kept in the FSM data,
and a button pressed on any other message is out of date. When the flow moves to a new message
(the user typed), the old one loses its keyboard: only one set of live buttons at a time.
Every value from a button is checked again against the matrix and the limits, because a client
can send any callback data.

The gateway call runs in a background task (handlers.user.creating), not in the handler: a slow
gateway must not hold the user's update lock, so /start and /cancel still answer at once.
"""
from __future__ import annotations

import logging
from contextlib import suppress
from typing import Any

from aiogram import Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardMarkup, Message

from handlers.i18n import Translator
from handlers.ui import views
from handlers.ui.callbacks import AmountCb, CoinCb, FlowAction, FlowCb, LinkCb, MenuAction, MenuCb, NetworkCb
from handlers.ui.qr import qr_png
from handlers.ui.replies import replace_or_answer
from handlers.user.filters import HAS_TEXT, NOT_COMMAND, PRIVATE, PRIVATE_CALLBACK
from services.coupons import CouponChoice, CouponError, promised_bonus
from services.matrix import LINK_COIN, LINK_METHODS, coin_from_text
from services.money import AmountError, AmountLimits, AmountProblem, check_limits, parse_usd_within
from services.store import Deposit, User
from services.store import coupons as coupon_repo
from services.topup import TopupError, TopupProblem, TopupService

log = logging.getLogger(__name__)


class TopupFlow(StatesGroup):
    coin = State()
    network = State()
    amount = State()
    confirm = State()
    coupon = State()  # entered from the confirmation ("🎟 Add coupon"); returns to it
    creating = State()


# --- entering the flow ---

async def topup_command(message: Message, state: FSMContext, user: User, t: Translator,
                        topup: TopupService) -> None:
    if await _refused_by_limits(message, t, topup, user.id, edit=False):
        return
    await close_flow_message(message.bot, message.chat.id, state, t("flow.replaced"))
    sent = await message.answer(t("topup.pick-coin"), reply_markup=_coins_keyboard(t, topup))
    await _start_flow(state, sent.message_id)


async def topup_button(cb: CallbackQuery, callback_data: MenuCb, state: FSMContext, user: User, t: Translator,
                       topup: TopupService) -> None:
    await cb.answer()
    if not isinstance(cb.message, Message):
        return
    if await _refused_by_limits(cb.message, t, topup, user.id, edit=not callback_data.below):
        return
    # An old menu tapped while a flow is open: the open flow is closed visibly, not silently replaced.
    await close_flow_message(cb.bot, cb.message.chat.id, state, t("flow.replaced"), unless=cb.message.message_id)
    shown = await replace_or_answer(cb.message, t("topup.pick-coin"), _coins_keyboard(t, topup),
                                    below=callback_data.below)
    await _start_flow(state, shown.message_id)


async def _refused_by_limits(message: Message, t: Translator, topup: TopupService, user_id: int, *,
                             edit: bool) -> bool:
    """Say the per-user limits before any step, with History one tap away."""
    try:
        await topup.check_user_limits(user_id)
    except TopupError as exc:
        text = t(f"topup.error.{exc.problem.value}", limit=exc.limit or 0)
        if edit and message.text is not None:
            await message.edit_text(text, reply_markup=views.limits_keyboard(t))
        else:
            await message.answer(text, reply_markup=views.limits_keyboard(t))
        return True
    return False


def _coins_keyboard(t: Translator, topup: TopupService) -> InlineKeyboardMarkup:
    return views.coins_keyboard(t, topup.matrix.coins(), topup.link_methods())


async def _start_flow(state: FSMContext, flow_message_id: int) -> None:
    await state.set_state(TopupFlow.coin)
    await state.set_data({"flow_msg": flow_message_id})


async def close_flow_message(bot: Bot | None, chat_id: int, state: FSMContext, text: str, *,
                             unless: int | None = None) -> None:
    """Retire the open flow's message (its buttons would be out of date): say why, remove its keyboard.

    A deposit still being created keeps its message: the creation task will finish it.
    """
    current = await state.get_state()
    flow_msg = (await state.get_data()).get("flow_msg")
    if bot is None or current is None or current == TopupFlow.creating.state or not flow_msg or flow_msg == unless:
        return
    with suppress(TelegramBadRequest):  # already gone or unchanged: nothing to retire
        await bot.edit_message_text(text, chat_id=chat_id, message_id=int(flow_msg), reply_markup=None)


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
    if not topup.matrix.networks(callback_data.coin):
        await cb.answer(t("stale"))
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    await _after_coin(cb.message, state, t, topup, callback_data.coin, edit=True)


async def type_coin(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    """A coin typed by name (`usdt`, `Bitcoin`) picks it, as a tap would."""
    coin = coin_from_text(message.text or "", topup.matrix.coins())
    if coin is None:
        await _show(message, state, t("topup.error.unknown-coin") + "\n\n" + t("topup.pick-coin"),
                    _coins_keyboard(t, topup), edit=False)
        return
    await _after_coin(message, state, t, topup, coin, edit=False)


async def _after_coin(message: Message, state: FSMContext, t: Translator, topup: TopupService, coin: str, *,
                      edit: bool) -> None:
    networks = topup.matrix.networks(coin)
    if len(networks) == 1:
        await _ask_amount(message, state, t, topup, coin, networks[0], edit=edit)
        return
    await state.update_data(coin=coin)
    await state.set_state(TopupFlow.network)
    await _show(message, state, t("topup.pick-network", coin=coin), views.networks_keyboard(t, coin, networks),
                edit=edit)


async def network_not_picked(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    """Words at the network step: the networks again, with a word on why (an error keeps its step's buttons)."""
    coin = str((await state.get_data()).get("coin"))
    networks = topup.matrix.networks(coin)
    if not networks:
        await _show(message, state, t("topup.pick-coin"), _coins_keyboard(t, topup), edit=False)
        await state.set_state(TopupFlow.coin)
        return
    await _show(message, state, t("topup.error.pick-network") + "\n\n" + t("topup.pick-network", coin=coin),
                views.networks_keyboard(t, coin, networks), edit=False)


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
    await _show(message, state, f"{prefix}\n\n{text}" if prefix else text, _amount_keyboard(t, topup, limits),
                edit=edit)


def _amount_keyboard(t: Translator, topup: TopupService, limits: AmountLimits) -> InlineKeyboardMarkup:
    return views.amount_keyboard(t, tuple(c for c in topup.quick_amounts_cents
                                          if limits.min_cents <= c <= limits.max_cents))


async def _flow_limits(state: FSMContext, topup: TopupService) -> AmountLimits:
    data = await state.get_data()
    return topup.limits_for(str(data.get("coin")), str(data.get("network")))


async def _check_amount(state: FSMContext, topup: TopupService, cents: int) -> None:
    """What the amount must also be for the chosen method: payment pages take whole dollars."""
    data = await state.get_data()
    if topup.link_method(str(data.get("network"))) is not None and cents % 100:
        raise AmountError(AmountProblem.WHOLE_DOLLARS)


def _amount_error(t: Translator, problem: AmountProblem, limits: AmountLimits) -> str:
    return t(f"amount.error.{problem.value}", min=t.usd(limits.min_cents), max=t.usd(limits.max_cents))


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
    await state.update_data(amount_cents=callback_data.cents)
    await _show_confirm(cb.message, state, t, topup, None, edit=True)


async def type_amount(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    assert message.text is not None
    limits = await _flow_limits(state, topup)
    try:
        cents = parse_usd_within(message.text, limits)
        await _check_amount(state, topup, cents)
    except AmountError as exc:
        await _show(message, state, _amount_error(t, exc.problem, limits), _amount_keyboard(t, topup, limits),
                    edit=False)
        return
    await state.update_data(amount_cents=cents)
    await _show_confirm(message, state, t, topup, None, edit=False)


async def amount_not_text(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    limits = await _flow_limits(state, topup)
    await _show(message, state, _amount_error(t, AmountProblem.FORMAT, limits), _amount_keyboard(t, topup, limits),
                edit=False)


# --- coupon (optional, from the confirmation) ---

async def add_coupon(cb: CallbackQuery, state: FSMContext, t: Translator) -> None:
    data = await _on_flow_message(cb, state, t)
    if data is None:
        return
    await cb.answer()
    assert isinstance(cb.message, Message)
    await _ask_coupon(cb.message, state, t, int(data["amount_cents"]), edit=True)


async def _ask_coupon(message: Message, state: FSMContext, t: Translator, amount_cents: int, *, edit: bool,
                      prefix: str | None = None) -> None:
    await state.update_data(amount_cents=amount_cents, coupon=None)
    await state.set_state(TopupFlow.coupon)
    text = t("topup.ask-coupon", amount=t.usd(amount_cents))
    await _show(message, state, f"{prefix}\n\n{text}" if prefix else text, views.coupon_keyboard(t), edit=edit)


async def type_coupon(message: Message, state: FSMContext, t: Translator, topup: TopupService) -> None:
    assert message.text is not None and message.from_user is not None
    data = await state.get_data()
    try:
        choice = await topup.choose_coupon(user_id=message.from_user.id, code=message.text,
                                           amount_cents=int(data["amount_cents"]), network=str(data["network"]))
    except CouponError as exc:
        await _show(message, state, _coupon_error(t, exc), views.coupon_keyboard(t), edit=False)
        return
    await _show_confirm(message, state, t, topup, choice, edit=False)


async def coupon_not_text(message: Message, state: FSMContext, t: Translator) -> None:
    await _show(message, state, t("coupon.error.format"), views.coupon_keyboard(t), edit=False)


def _coupon_error(t: Translator, exc: CouponError) -> str:
    return t(f"coupon.error.{exc.problem.value}", min=t.usd(exc.min_amount_cents or 0))


# --- confirm and create ---

async def _show_confirm(message: Message, state: FSMContext, t: Translator, topup: TopupService,
                        choice: CouponChoice | None, *, edit: bool, prefix: str | None = None) -> None:
    data = await state.get_data()
    await state.update_data(coupon=choice.to_state() if choice else None)
    await state.set_state(TopupFlow.confirm)
    text = views.confirm_text(t, coin=data["coin"], network=data["network"], amount_cents=int(data["amount_cents"]),
                              coupon=choice, sandbox=topup.gateway.is_sandbox)
    await _show(message, state, f"{prefix}\n\n{text}" if prefix else text,
                views.confirm_keyboard(t, with_coupon=choice is not None), edit=edit)


async def create_deposit(cb: CallbackQuery, state: FSMContext, t: Translator, topup: TopupService,
                         support_contact: str | None, creations: Any) -> None:
    """Reserve the deposit here (local, fast), then let a background task ask the gateway."""
    data = await _on_flow_message(cb, state, t)
    if data is None:
        return
    assert isinstance(cb.message, Message) and cb.from_user is not None
    # Leave the confirm state first: a second tap (events are serialized per user) is now stale.
    await state.set_state(TopupFlow.creating)
    await cb.answer()
    coupon = data.get("coupon") or {}
    try:
        reservation = await topup.reserve_deposit(
            user_id=cb.from_user.id, chat_id=cb.message.chat.id, coin=data["coin"], network=data["network"],
            amount_cents=int(data["amount_cents"]), coupon_code=coupon.get("code"),
            creating_message=(cb.message.chat.id, cb.message.message_id), return_url=await _bot_link(cb.bot))
    except (AmountError, CouponError, TopupError) as exc:
        await creation_refused(cb.message, state, t, topup, data, exc, support_contact=support_contact)
        return
    await state.update_data(creating=reservation.deposit_id)
    await cb.message.edit_text(t("confirm.creating"), reply_markup=None)
    creations.start(reservation, cb.message, state, t, support_contact)


async def _bot_link(bot: Bot | None) -> str | None:
    """https://t.me/<bot>: where a payment page sends the payer back when they are done."""
    if bot is None:
        return None
    me = await bot.me()
    return f"https://t.me/{me.username}" if me.username else None


async def creation_refused(message: Message, state: FSMContext, t: Translator, topup: TopupService,
                           data: dict[str, Any], exc: Exception, *, support_contact: str | None) -> None:
    """Back to the step that can fix what went wrong, with that step's buttons (the flow message is edited)."""
    coupon = data.get("coupon") or {}
    if isinstance(exc, CouponError):
        await _ask_coupon(message, state, t, int(data["amount_cents"]), edit=True, prefix=_coupon_error(t, exc))
        return
    if isinstance(exc, AmountError):
        limits = topup.limits_for(data["coin"], data["network"])
        await _ask_amount(message, state, t, topup, data["coin"], data["network"], edit=True,
                          prefix=_amount_error(t, exc.problem, limits))
        return
    assert isinstance(exc, TopupError)
    if exc.problem is TopupProblem.AMOUNT_REJECTED:
        prefix = (t("topup.error.amount-min", minimum=exc.minimum) if exc.minimum
                  else t("topup.error.amount-max", maximum=exc.maximum or "?"))
        await _ask_amount(message, state, t, topup, data["coin"], data["network"], edit=True, prefix=prefix)
        return
    if exc.problem in (TopupProblem.TOO_MANY_OPEN, TopupProblem.TOO_MANY_RECENT):
        await state.clear()
        await message.edit_text(t(f"topup.error.{exc.problem.value}", limit=exc.limit or 0),
                                reply_markup=views.limits_keyboard(t))
        return
    if exc.problem is TopupProblem.PAIR_UNAVAILABLE:
        await state.set_state(TopupFlow.coin)
        await message.edit_text(t("topup.error.pair-unavailable") + "\n\n" + t("topup.pick-coin"),
                                reply_markup=_coins_keyboard(t, topup))
        return
    choice = await _choice_from_state(topup, coupon, int(data["amount_cents"]))
    await _show_confirm(message, state, t, topup, choice, edit=True,
                        prefix=t("topup.error.temporarily-unavailable") + views.support_line(t, support_contact))


async def _choice_from_state(topup: TopupService, coupon: dict[str, Any], amount_cents: int) -> CouponChoice | None:
    """Rebuild the confirmation's coupon line after a failed attempt; creating again re-validates it."""
    if not coupon.get("code"):
        return None
    found = await coupon_repo.get(topup.db.reader, int(coupon["coupon_id"])) if coupon.get("coupon_id") else None
    return CouponChoice(code=str(coupon["code"]), coupon=found,
                        bonus_cents=found.bonus_for(amount_cents) if found else None)


async def send_deposit_card(message: Message, t: Translator, topup: TopupService, deposit: Deposit) -> None:
    """Send the card and make it the deposit's one live card: a card shown before loses its buttons."""
    sandbox = topup.gateway.is_sandbox
    bonus = await promised_bonus(topup.db.reader, deposit)
    caption = views.deposit_caption(t, deposit, sandbox=sandbox, bonus_cents=bonus)
    keyboard = views.deposit_keyboard(t, deposit, sandbox=sandbox)
    if deposit.is_link:  # nothing to scan: the card is the link and what happens next
        card = await message.answer(caption, reply_markup=keyboard)
    else:
        assert deposit.address is not None
        card = await message.answer_photo(
            BufferedInputFile(qr_png(views.qr_payload(deposit)), filename=f"deposit-{deposit.id}.png"),
            caption=caption, reply_markup=keyboard)
    await topup.attach_message(deposit.id, card.chat.id, card.message_id)
    # The card shown before (from History, say) loses its buttons; the "Creating…" message this card answers has none.
    before = (deposit.message_chat_id, deposit.message_id)
    if None not in before and before != (message.chat.id, message.message_id) and message.bot is not None:
        with suppress(TelegramBadRequest):  # the old card is gone or already bare
            await message.bot.edit_message_reply_markup(chat_id=int(before[0] or 0), message_id=int(before[1] or 0),
                                                        reply_markup=None)


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
    elif current == TopupFlow.confirm.state:
        await _ask_amount(cb.message, state, t, topup, str(coin), str(data.get("network")), edit=True)
    elif current == TopupFlow.coupon.state:
        await _show_confirm(cb.message, state, t, topup, None, edit=True)


async def cancel_flow(cb: CallbackQuery, state: FSMContext, t: Translator) -> None:
    if await _on_flow_message(cb, state, t) is None:
        return
    await state.clear()
    await cb.answer()
    assert isinstance(cb.message, Message)
    await cb.message.edit_text(t("flow.cancelled"), reply_markup=views.main_menu(t))


async def _show(message: Message, state: FSMContext, text: str, keyboard: InlineKeyboardMarkup, *,
                edit: bool) -> None:
    """Edit the flow message in place, or send a new one (after the user typed) and make it the flow message;
    the one before then loses its keyboard, so only the newest buttons are live."""
    if edit:
        await message.edit_text(text, reply_markup=keyboard)
        return
    previous = (await state.get_data()).get("flow_msg")
    sent = await message.answer(text, reply_markup=keyboard)
    await state.update_data(flow_msg=sent.message_id)
    if previous and message.bot is not None:
        with suppress(TelegramBadRequest):  # already bare, or deleted by the user
            await message.bot.edit_message_reply_markup(chat_id=message.chat.id, message_id=int(previous),
                                                        reply_markup=None)


def build_router() -> Router:
    router = Router(name="topup")
    router.message.filter(PRIVATE)
    router.callback_query.filter(PRIVATE_CALLBACK)
    router.message.register(topup_command, Command("topup"))
    router.callback_query.register(topup_button, MenuCb.filter(F.action == MenuAction.TOPUP))
    # StateFilter, not the bare State: aiogram runs a plain callable such as a State in a worker thread.
    at_coin, at_network, at_amount = (StateFilter(TopupFlow.coin), StateFilter(TopupFlow.network),
                                      StateFilter(TopupFlow.amount))
    at_coupon, at_confirm = StateFilter(TopupFlow.coupon), StateFilter(TopupFlow.confirm)
    at_coupon_or_confirm = StateFilter(TopupFlow.coupon, TopupFlow.confirm)
    router.callback_query.register(pick_coin, at_coin, CoinCb.filter())
    router.callback_query.register(pick_link, at_coin, LinkCb.filter())
    router.message.register(type_coin, at_coin, HAS_TEXT, NOT_COMMAND)
    router.callback_query.register(pick_network, at_network, NetworkCb.filter())
    router.message.register(network_not_picked, at_network, NOT_COMMAND)
    router.callback_query.register(pick_amount, at_amount, AmountCb.filter())
    router.message.register(type_amount, at_amount, HAS_TEXT, NOT_COMMAND)
    router.message.register(amount_not_text, at_amount, NOT_COMMAND)
    router.callback_query.register(add_coupon, at_confirm, FlowCb.filter(F.action == FlowAction.ADD_COUPON))
    # A code typed at the confirmation is a coupon too: no need to find "Add coupon" first.
    router.message.register(type_coupon, at_coupon_or_confirm, HAS_TEXT, NOT_COMMAND)
    router.message.register(coupon_not_text, at_coupon, NOT_COMMAND)
    router.callback_query.register(create_deposit, at_confirm, FlowCb.filter(F.action == FlowAction.CREATE))
    router.callback_query.register(back, FlowCb.filter(F.action == FlowAction.BACK))
    router.callback_query.register(cancel_flow, FlowCb.filter(F.action == FlowAction.CANCEL))
    return router
