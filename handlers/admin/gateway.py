"""/gateway (health and the operator's balances), /payout and /payouts (Smart CloudPay) in the admin chat."""
from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from handlers.admin_access import AdminAccess
from handlers.i18n import Html, Translator
from handlers.admin.confirm import actor_of, ask, executes
from handlers.admin.coupons import provider_coupons_text
from services.admin import Actor, AdminService, PendingAction
from services.gateways.base import (
    AccountBalanceGateway,
    Gateway,
    GatewayError,
    OutgoingIPGateway,
    PayoutHistoryGateway,
    PrepaidGateway,
    WalletBalanceGateway,
)
from services.gateways.capabilities import Capabilities
from services.gateways.registry import spec_named
from services.money import decimal_to_cents, format_usd
from services.payouts import FAILED, NETWORKS, RETRYABLE, Payout, PayoutError, PayoutProblem, PayoutService

log = logging.getLogger(__name__)

HISTORY_SIZE = 10
GATEWAY_HISTORY_SIZE = 5  # the gateway's own list in /gateway, as its documentation's example asks
# Problems that mean "you typed it wrong": the reply repeats the usage.
_INPUT_PROBLEMS = frozenset({PayoutProblem.AMOUNT, PayoutProblem.COIN, PayoutProblem.NETWORK, PayoutProblem.PAIR,
                             PayoutProblem.ADDRESS, PayoutProblem.REFERENCE})


class PayoutCb(CallbackData, prefix="apr"):
    """Refresh one payout's status; the id is looked up again (a client can send any bytes)."""

    id: int


# --- /gateway ---

async def gateway_command(message: Message, t: Translator, gateway: Gateway, capabilities: Capabilities) -> None:
    # Balances first: the calls themselves update the health shown below them.
    balances = await _balances(t, gateway, capabilities)
    lines = [t("admin.gateway.title", name=gateway.name)]
    if gateway.is_sandbox:
        lines.append(t("admin.gateway.sandbox"))
    else:
        lines += ["", t("admin.gateway.balances"), *balances]
    health = gateway.health
    error = t("admin.gateway.no-error") if health.last_error_at is None else t(
        "admin.gateway.error", at=_when(health.last_error_at), detail=health.last_error or "")
    lines += ["", t("admin.gateway.health", ok=_when(health.last_ok_at) if health.last_ok_at is not None
                    else t("admin.gateway.never"), error=Html(error))]
    await message.answer("\n".join(lines))


async def _balances(t: Translator, gateway: Gateway, can: Capabilities) -> list[str]:
    """A line for each report the gateway can give (its spec's capabilities), in a fixed order."""
    spec = spec_named(gateway.name)
    title = spec.title if spec is not None else gateway.name
    lines = []
    if can.account_balance is not None:
        lines.append(await _shown(t, t("admin.gateway.label-account"), _account_balance(t, can.account_balance)))
    if can.account_coupons is not None:
        lines.append(await _shown(t, t("admin.gateway.label-coupons"), provider_coupons_text(t, can.account_coupons)))
    if can.wallet_balance is not None:
        lines.append(await _shown(t, t("admin.gateway.label-cryptomus", gateway=title),
                                  _wallet_balance(t, can.wallet_balance, title)))
    if can.prepaid is not None:
        prepaid = can.prepaid
        lines.append(await _shown(t, t("admin.gateway.label-prepaid"), _prepaid(t, prepaid)))
        for pair in sorted(gateway.pairs, key=lambda p: (p.network, p.coin)):
            label = t("admin.gateway.label-chain", coin=pair.coin, network=pair.network)
            lines.append(await _shown(t, label, _chain(t, prepaid, pair.network, pair.coin)))
        lines.append(await _shown(t, t("admin.gateway.label-wallets"), _wallets(t, prepaid)))
    if can.outgoing_ip is not None:
        lines.append(await _shown(t, t("admin.gateway.label-ip"), _outgoing_ip(t, can.outgoing_ip)))
    if can.payout_history is not None:
        lines.append(await _shown(t, t("admin.gateway.label-payout-history"),
                                  _payout_history(t, can.payout_history)))
    return lines or [t("admin.gateway.no-balances")]


async def _shown(t: Translator, label: str, line: Awaitable[str]) -> str:
    """One balance line, or why it is unavailable: a failing balance call never breaks the report."""
    try:
        return await line
    except GatewayError as exc:
        return t("admin.gateway.unavailable", what=label, reason=exc.operator_detail)
    except Exception as exc:  # noqa: BLE001 - a display-only call: any surprise becomes a line, logged in full
        log.exception("gateway balance %s failed", label)
        return t("admin.gateway.unavailable", what=label, reason=type(exc).__name__)


async def _account_balance(t: Translator, gateway: AccountBalanceGateway) -> str:
    account = await gateway.account_balance()
    balance, total = account.get("balance"), account.get("totalCharges")
    return t("admin.gateway.account", balance=_cents_or_text(t, balance), total=_cents_or_text(t, total),
             discount=str(account.get("currentDiscountRate") or "0%")[:16])


async def _wallet_balance(t: Translator, gateway: WalletBalanceGateway, title: str) -> str:
    held = [entry for entry in await gateway.balance() if entry[2] > 0]
    if not held:
        return t("admin.gateway.cryptomus-empty", gateway=title)
    lines = [t("admin.gateway.cryptomus-merchant" if wallet == "merchant" else "admin.gateway.cryptomus-user",
               currency=currency, balance=_coin(amount), usd=format_usd(decimal_to_cents(usd)) if usd is not None
               else t("admin.gateway.not-reported")) for wallet, currency, amount, usd in held]
    return "\n".join(lines)


async def _prepaid(t: Translator, gateway: PrepaidGateway) -> str:
    return t("admin.gateway.prepaid", credits=_coin(await gateway.prepaid_balance()))


async def _chain(t: Translator, gateway: PrepaidGateway, network: str, coin: str) -> str:
    return t("admin.gateway.chain", coin=coin, network=network,
             balance=_coin(await gateway.chain_balance(network, coin)))


async def _wallets(t: Translator, gateway: PrepaidGateway) -> str:
    wallets = await gateway.wallets()
    if not wallets:
        return t("admin.gateway.no-wallets")
    return "\n".join([t("admin.gateway.wallets"),
                      *(t("admin.gateway.wallet", network=network or _none(t), address=address)
                        for network, address in wallets)])


async def _outgoing_ip(t: Translator, gateway: OutgoingIPGateway) -> str:
    return t("admin.gateway.outgoing-ip", ip=await gateway.outgoing_ip())


async def _payout_history(t: Translator, gateway: PayoutHistoryGateway) -> str:
    payouts = await gateway.payout_history(GATEWAY_HISTORY_SIZE)
    if not payouts:
        return t("admin.gateway.payout-history-empty")
    lines = [t("admin.gateway.payout-history-title", count=len(payouts))]
    for p in payouts:
        item = t("admin.gateway.payout-history-item", reference=p.reference or _none(t), amount=p.amount or _none(t),
                 coin=p.coin, network=p.network or _none(t), address=_short(p.address) if p.address else _none(t),
                 status=p.status or _none(t))
        lines.append(item + (" " + t("admin.payout.list-tx", tx=_short(p.tx_hash)) if p.tx_hash else ""))
    return "\n".join(lines)


def _none(t: Translator) -> str:
    return t("admin.gateway.not-reported")


# --- /payout ---

async def payout_command(message: Message, command: CommandObject, t: Translator, admin: AdminService,
                         admin_access: AdminAccess, gateway: Gateway, payouts: PayoutService | None) -> None:
    if message.from_user is None or not admin_access.is_listed(message.from_user.id):
        await message.reply(t("admin.payout.listed-only"))
        return
    service = payouts
    if service is None:
        await message.reply(t("admin.payout.needs-smartcloudpay", gateway=gateway.name))
        return
    args = (command.args or "").split()
    if len(args) != 5:
        await message.reply(_usage(t))
        return
    try:
        draft = await service.validate(*args)
    except PayoutError as exc:
        await message.reply(_problem(t, exc))
        return
    key = "admin.payout.summary-retry" if draft.retry else "admin.payout.summary"
    summary = t(key, amount=_coin(draft.amount), coin=draft.coin, network=draft.network, address=draft.address,
                reference=draft.reference, usd=format_usd(draft.usd_cents), used=format_usd(draft.today_cents),
                limit=format_usd(service.daily_max_cents))
    await ask(message, t, admin, "payout", draft.payload(), Html(summary))


@executes("payout")
async def confirm_payout(pending: PendingAction, actor: Actor, t: Translator, data: dict[str, Any]) -> str:
    """Checked again (time has passed), the tap spent, the row written, and only then the gateway asked."""
    admin: AdminService = data["admin"]
    gateway: Gateway = data["gateway"]
    if not data["admin_access"].is_listed(actor.id):
        return t("admin.payout.listed-only")
    service: PayoutService | None = data["payouts"]
    if service is None:
        return t("admin.payout.needs-smartcloudpay", gateway=gateway.name)
    try:
        await service.validate(*(str(pending.payload[k]) for k in ("amount", "coin", "network", "address",
                                                                     "reference")))
        await admin.take(pending, actor)
        payout = await service.request(pending.payload, actor.id)
    except PayoutError as exc:
        return _problem(t, exc)
    payout = await service.execute(payout.reference)
    await admin.record(actor, "payout", f"payout:{payout.reference}",
                       {"amount": str(payout.amount), "coin": payout.coin, "network": payout.network,
                        "address": payout.address, "usd_cents": payout.usd_cents, "status": payout.status,
                        "tx_hash": payout.tx_hash, "detail": payout.detail})
    return _result(t, payout)


def _result(t: Translator, payout: Payout) -> str:
    if payout.status == FAILED:
        return t("admin.payout.failed", reference=payout.reference, detail=payout.detail or payout.status)
    if payout.status in RETRYABLE:
        return t("admin.payout.unknown", reference=payout.reference, detail=payout.detail or payout.status)
    text = t("admin.payout.sent", reference=payout.reference, amount=_coin(payout.amount), coin=payout.coin,
             network=payout.network, address=payout.address, status=payout.status)
    return text + ("\n" + t("admin.payout.tx", tx=payout.tx_hash) if payout.tx_hash else "")


# --- /payouts ---

async def payouts_command(message: Message, t: Translator, gateway: Gateway, payouts: PayoutService | None) -> None:
    service = payouts
    if service is None:
        await message.reply(t("admin.payout.needs-smartcloudpay", gateway=gateway.name))
        return
    text, keyboard = await _listing(t, service)
    await message.answer(text, reply_markup=keyboard)


async def refresh_payout(cb: CallbackQuery, callback_data: PayoutCb, t: Translator, admin: AdminService,
                         payouts: PayoutService | None) -> None:
    service = payouts
    try:
        if service is None:
            raise PayoutError(PayoutProblem.NOT_FOUND)
        payout = await service.by_id(callback_data.id)
        if payout.is_final:
            await cb.answer(t("admin.payout.refreshed", reference=payout.reference, status=payout.status))
            return
        payout = await service.refresh(payout.reference)
    except PayoutError:
        await cb.answer(t("stale"), show_alert=True)
        return
    except GatewayError as exc:
        await cb.answer(t("admin.payout.refresh-unavailable", reason=exc.operator_detail[:150]), show_alert=True)
        return
    await admin.record(actor_of(cb), "payout_refresh", f"payout:{payout.reference}",
                       {"status": payout.status, "tx_hash": payout.tx_hash})
    await cb.answer(t("admin.payout.refreshed", reference=payout.reference, status=payout.status))
    if isinstance(cb.message, Message):
        text, keyboard = await _listing(t, service)
        try:
            await cb.message.edit_text(text, reply_markup=keyboard)
        except TelegramBadRequest:  # nothing changed since the list was sent
            pass


async def _listing(t: Translator, service: PayoutService) -> tuple[str, InlineKeyboardMarkup | None]:
    payouts = await service.history(HISTORY_SIZE)
    if not payouts:
        return t("admin.payout.list-empty"), None
    lines = [t("admin.payout.list-title", used=format_usd(await service.today_cents()),
               limit=format_usd(service.daily_max_cents))]
    buttons = []
    for payout in payouts:
        item = t("admin.payout.list-item", reference=payout.reference, amount=_coin(payout.amount), coin=payout.coin,
                 network=payout.network, address=_short(payout.address), status=payout.status,
                 when=_when(payout.created_at))
        lines.append(item + (" " + t("admin.payout.list-tx", tx=_short(payout.tx_hash)) if payout.tx_hash else ""))
        if not payout.is_final:
            buttons.append([InlineKeyboardButton(text=t("admin.payout.refresh", reference=payout.reference),
                                                 callback_data=PayoutCb(id=payout.id).pack())])
    return "\n".join(lines), InlineKeyboardMarkup(inline_keyboard=buttons) if buttons else None


# --- helpers ---

def _usage(t: Translator) -> str:
    return t("admin.payout.usage", networks=", ".join(NETWORKS))


def _problem(t: Translator, exc: PayoutError) -> str:
    """The refusal in words; a typing mistake also gets the usage again."""
    details = {key: format_usd(value) if key in ("usd", "used", "limit") else value
               for key, value in exc.details.items()}
    match exc.problem:
        case PayoutProblem.AMOUNT:
            problem_key = "admin.payout.error-amount"
        case PayoutProblem.COIN:
            problem_key = "admin.payout.error-coin"
        case PayoutProblem.NETWORK:
            problem_key = "admin.payout.error-network"
        case PayoutProblem.PAIR:
            problem_key = "admin.payout.error-pair"
        case PayoutProblem.ADDRESS:
            problem_key = "admin.payout.error-address"
        case PayoutProblem.REFERENCE:
            problem_key = "admin.payout.error-reference"
        case PayoutProblem.DUPLICATE:
            problem_key = "admin.payout.error-duplicate"
        case PayoutProblem.OVER_MAX:
            problem_key = "admin.payout.error-over-max"
        case PayoutProblem.OVER_DAILY:
            problem_key = "admin.payout.error-over-daily"
        case _:
            problem_key = "admin.payout.error-not-found"
    text = t(problem_key, **details)
    return f"{text}\n\n{_usage(t)}" if exc.problem in _INPUT_PROBLEMS else text


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _coin(value: Decimal) -> str:
    """A coin amount as digits, never in exponent form, without trailing zeros."""
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def _short(text: str) -> str:
    return text if len(text) <= 16 else f"{text[:8]}…{text[-6:]}"


def _cents_or_text(t: Translator, value: Any) -> str:
    """SMSOnline's balance fields are cents [inferred]: an integer (or digits) as USD, anything else as it came."""
    if isinstance(value, int) and not isinstance(value, bool):
        return format_usd(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit() and len(value) < 16:
        return format_usd(int(value))
    return t("admin.gateway.not-reported") if value is None else str(value)[:32]


def build_router() -> Router:
    router = Router(name="admin-gateway")
    router.message.register(gateway_command, Command("gateway"))
    router.message.register(payout_command, Command("payout"))
    router.message.register(payouts_command, Command("payouts"))
    router.callback_query.register(refresh_payout, PayoutCb.filter())
    return router
