"""Deposits in the admin chat: /stats, /pending, /deposit (Recheck, Cancel), /find, /confirm and /export."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from enum import Enum
from typing import Any

from aiogram import Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command, CommandObject
from aiogram.filters.callback_data import CallbackData
from aiogram.types import BufferedInputFile, CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from handlers.i18n import Html, Translator
from handlers.ui import views
from handlers.admin.confirm import actor_of, ask, executes
from handlers.ui.views import format_time
from services import admin_reports
from services.admin import Actor, AdminService, PendingAction
from services.admin_reports import DepositRow, Stats
from services.matrix import network_title
from services.money import format_crypto, format_usd
from services.settlement import Outcome
from services.store import Database, DepositStatus, now_ts
from services.topup import TopupError, TopupProblem, TopupService

PENDING_LIMIT = 20
FIND_LIMIT = 20
MAX_NOTE = 300
MAX_QUERY = 200
_ID = re.compile(r"[0-9]{1,19}")  # ASCII digits only: int() also takes "١٢" or "1_000"
_NONE = "—"


class DepositAdminAction(str, Enum):
    RECHECK = "recheck"
    CANCEL = "cancel"
    SHOW = "show"  # under an event line in the admin chat: the deposit in full


class AdminDepositCb(CallbackData, prefix="adep"):
    action: DepositAdminAction
    deposit_id: int


# --- /stats ---

def _period(args: str | None) -> tuple[str, int | None] | None:
    """(name, start) of the period asked for, today by default; None for anything but today|7d|30d|all."""
    name = (args or "today").strip().lower()
    try:
        return name, admin_reports.period_start(name, now_ts())
    except ValueError:
        return None


async def stats_command(message: Message, command: CommandObject, t: Translator, db: Database,
                        admin: AdminService) -> None:
    period = _period(command.args)
    if period is None:
        await message.reply(t("admin.deposits.usage.stats"))
        return
    since = period[1]
    await message.reply(stats_text(t, await admin_reports.stats(db, since, include_test=admin.sandbox), since))


def stats_text(t: Translator, stats: Stats, since: int | None) -> str:
    lines = [t("admin.deposits.stats-since", since=format_time(since)) if since is not None
             else t("admin.deposits.stats-all"),
             t("admin.deposits.stats-counts", created=stats.created, paid=stats.paid, pending=stats.pending,
               expired=stats.expired, cancelled=stats.cancelled, failed=stats.failed,
               conversion=_NONE if stats.conversion is None else f"{stats.conversion:.1%}"),
             t("admin.deposits.stats-sums", credited=format_usd(stats.credited_cents),
               bonus=format_usd(stats.bonus_cents))]
    if stats.by_pair:
        lines.append(t("admin.deposits.stats-by-pair"))
        lines += [t("admin.deposits.stats-pair", coin=p.coin, network=network_title(p.network), paid=p.paid,
                    credited=format_usd(p.credited_cents), bonus=format_usd(p.bonus_cents)) for p in stats.by_pair]
    return "\n".join(lines)


# --- /pending and /find: one short line per deposit ---

def short_line(t: Translator, row: DepositRow) -> str:
    d = row.deposit
    return t("admin.deposits.line", id=d.id, status=t(f"deposit.status.{d.status.value}"),
             amount=format_usd(d.amount_cents), coin=d.coin, network=network_title(d.network),
             user=views.user_label(row, d.user_id), created=format_time(d.created_at))


async def pending_command(message: Message, command: CommandObject, t: Translator, db: Database) -> None:
    if command.args:
        await message.reply(t("admin.deposits.usage.pending"))
        return
    rows, total = await admin_reports.pending(db, PENDING_LIMIT)
    if not rows:
        await message.reply(t("admin.deposits.pending-none"))
        return
    lines = [t("admin.deposits.pending-title", count=total), *(short_line(t, row) for row in rows)]
    if total > len(rows):
        lines.append(t("admin.deposits.more", count=total - len(rows)))
    await message.reply("\n".join(lines))


async def find_command(message: Message, command: CommandObject, t: Translator, db: Database) -> None:
    query = (command.args or "").strip()
    if not query or len(query) > MAX_QUERY or len(query.split()) != 1:
        await message.reply(t("admin.deposits.usage.find"))
        return
    rows = await admin_reports.find_deposits(db, query, FIND_LIMIT + 1)
    if not rows:
        await message.reply(t("admin.deposits.find-none", query=query))
        return
    lines = [t("admin.deposits.find-title", query=query), *(short_line(t, row) for row in rows[:FIND_LIMIT])]
    if len(rows) > FIND_LIMIT:
        lines.append(t("admin.deposits.find-first", count=FIND_LIMIT))
    await message.reply("\n".join(lines))


# --- /deposit <id> and its buttons ---

def _deposit_id(text: str | None) -> int | None:
    text = (text or "").strip()
    return int(text) if _ID.fullmatch(text) else None


def detail_text(t: Translator, row: DepositRow) -> str:
    d = row.deposit
    text = t("admin.deposits.detail", id=d.id, status=t(f"deposit.status.{d.status.value}"),
             user=views.user_label(row, d.user_id), amount=format_usd(d.amount_cents),
             quoted=_NONE if d.quoted_cents is None else format_usd(d.quoted_cents),
             coin=d.coin, network=network_title(d.network), method=d.method,
             pay=_NONE if d.pay_amount is None else f"{format_crypto(d.pay_amount)} {d.pay_currency or d.coin}",
             gateway=d.gateway, order=d.order_id or _NONE, address=d.address or _NONE, txid=d.txid or _NONE,
             created=format_time(d.created_at), expires=_time_or_none(d.expires_at), paid=_time_or_none(d.paid_at),
             coupon=row.coupon_code or d.gateway_coupon or _NONE,
             credited=_NONE if d.credited_cents is None else format_usd(d.credited_cents),
             bonus=_NONE if d.bonus_cents is None else format_usd(d.bonus_cents))
    if d.failure_reason:
        text += "\n" + t("admin.deposits.detail-reason", reason=d.failure_reason)
    return text


def _time_or_none(ts: int | None) -> str:
    return _NONE if ts is None else format_time(ts)


def detail_keyboard(t: Translator, row: DepositRow) -> InlineKeyboardMarkup | None:
    """Recheck while it can still be paid (late payments count); Cancel only while it is pending."""
    d = row.deposit
    buttons = []
    if d.order_id is not None and d.status is not DepositStatus.PAID:
        buttons.append(InlineKeyboardButton(text=t("admin.deposits.recheck"), callback_data=AdminDepositCb(
            action=DepositAdminAction.RECHECK, deposit_id=d.id).pack()))
    if d.order_id is not None and d.status is DepositStatus.PENDING:
        buttons.append(InlineKeyboardButton(text=t("admin.deposits.cancel"), callback_data=AdminDepositCb(
            action=DepositAdminAction.CANCEL, deposit_id=d.id).pack()))
    return InlineKeyboardMarkup(inline_keyboard=[buttons]) if buttons else None


def show_button(t: Translator, deposit_id: int) -> InlineKeyboardMarkup:
    """Under the admin chat's event lines: open the deposit in full."""
    return InlineKeyboardMarkup(inline_keyboard=[[InlineKeyboardButton(
        text=t("admin.deposits.show", id=deposit_id),
        callback_data=AdminDepositCb(action=DepositAdminAction.SHOW, deposit_id=deposit_id).pack())]])


async def deposit_command(message: Message, command: CommandObject, t: Translator, db: Database) -> None:
    deposit_id = _deposit_id(command.args)
    if deposit_id is None:
        await message.reply(t("admin.deposits.usage.deposit"))
        return
    row = await admin_reports.deposit_row(db, deposit_id)
    if row is None:
        await message.reply(t("admin.error.deposit-not-found", query=deposit_id))
        return
    await message.reply(detail_text(t, row), reply_markup=detail_keyboard(t, row))


async def deposit_button(cb: CallbackQuery, callback_data: AdminDepositCb, t: Translator, admin: AdminService,
                         topup: TopupService, db: Database) -> None:
    """Recheck or cancel any user's deposit with the user's own use cases, passing the deposit's owner."""
    row = await admin_reports.deposit_row(db, callback_data.deposit_id)
    if row is None or row.deposit.order_id is None:  # forged data: never reached the gateway, or no such deposit
        await cb.answer(t("admin.error.deposit-not-found", query=callback_data.deposit_id), show_alert=True)
        return
    deposit, actor = row.deposit, actor_of(cb)
    if callback_data.action is DepositAdminAction.SHOW:
        await cb.answer()
        if isinstance(cb.message, Message):
            await cb.message.reply(detail_text(t, row), reply_markup=detail_keyboard(t, row))
        return
    try:
        if callback_data.action is DepositAdminAction.RECHECK:
            check = await topup.check_status(deposit.user_id, deposit.id)
            outcome = check.settlement.outcome if check.settlement is not None else None
            await admin.record(actor, "recheck_deposit", f"deposit:{deposit.id}",
                               {"outcome": outcome.value if outcome else "already-paid",
                                "status": check.deposit.status.value})
            key = ("admin.deposits.recheck-paid" if outcome is None
                   else "admin.deposits.recheck-credited" if outcome is Outcome.CREDITED
                   else "admin.deposits.recheck-closed" if outcome is Outcome.CLOSED
                   else "admin.deposits.recheck-flagged" if outcome is Outcome.FLAGGED
                   else "admin.deposits.recheck-unchanged")
            toast = t(key, status=t(f"deposit.status.{check.deposit.status.value}"))
        else:
            await topup.cancel(deposit.user_id, deposit.id, reason=f"cancelled by {actor.name} ({actor.id})")
            await admin.record(actor, "cancel_deposit", f"deposit:{deposit.id}",
                               {"gateway_asked": topup.capabilities.cancel is not None})
            toast = t("admin.deposits.cancelled")
    except TopupError as exc:
        if exc.problem is TopupProblem.NOT_PENDING:
            await cb.answer(t("admin.deposits.not-pending"), show_alert=True)
            await _refresh(cb, t, db, deposit.id)
        else:
            await cb.answer(t("admin.deposits.gateway-unavailable"), show_alert=True)
        return
    await cb.answer(toast)
    await _refresh(cb, t, db, deposit.id)


async def _refresh(cb: CallbackQuery, t: Translator, db: Database, deposit_id: int) -> None:
    row = await admin_reports.deposit_row(db, deposit_id)
    if row is None or not isinstance(cb.message, Message):
        return
    try:
        await cb.message.edit_text(detail_text(t, row), reply_markup=detail_keyboard(t, row))
    except TelegramBadRequest as exc:
        if "not modified" not in exc.message:
            raise


# --- /confirm <deposit id> <note>: a money move, so it waits for the second tap ---

async def confirm_command(message: Message, command: CommandObject, t: Translator, admin: AdminService,
                          db: Database) -> None:
    parts = (command.args or "").split(maxsplit=1)
    deposit_id = _deposit_id(parts[0]) if parts else None
    note = parts[1].strip() if len(parts) == 2 else ""
    if deposit_id is None or not note or len(note) > MAX_NOTE:
        await message.reply(t("admin.deposits.usage.confirm", limit=MAX_NOTE))
        return
    row = await admin_reports.deposit_row(db, deposit_id)
    if row is None:
        await message.reply(t("admin.error.deposit-not-found", query=deposit_id))
        return
    d = row.deposit
    if d.order_id is None or d.status is DepositStatus.PAID:
        await message.reply(t("admin.error.not-manual"))
        return
    summary = Html(t("admin.deposits.confirm-summary", id=d.id, user=views.user_label(row, d.user_id),
                     amount=format_usd(d.expected_credit_cents), method=d.method, coin=d.coin,
                     network=network_title(d.network), status=t(f"deposit.status.{d.status.value}"), note=note))
    await ask(message, t, admin, "confirm_payment", {"deposit_id": d.id, "reason": note}, summary)


@executes("confirm_payment")
async def run_confirm_payment(pending: PendingAction, actor: Actor, t: Translator, data: dict[str, Any]) -> str:
    # on_confirm takes `admin` as a parameter of its own, so it is not in `data`; the dispatcher still holds it.
    admin: AdminService = data["admin"]
    result = await admin.confirm_payment(actor, pending)
    key = ("admin.deposits.confirmed" if result.outcome is Outcome.CREDITED
           else "admin.deposits.confirm-already" if result.outcome is Outcome.ALREADY_CREDITED
           else "admin.deposits.confirm-not-credited")
    return t(key, id=pending.payload["deposit_id"], credited=format_usd(result.credited_cents),
             bonus=format_usd(result.bonus_cents),
             balance=_NONE if result.balance_cents is None else format_usd(result.balance_cents),
             outcome=result.outcome.value)


# --- /export ---

async def export_command(message: Message, command: CommandObject, t: Translator, admin: AdminService,
                         db: Database) -> None:
    period = _period(command.args)
    if period is None:
        await message.reply(t("admin.deposits.usage.export"))
        return
    name, since = period
    export = await admin_reports.export_csv(db, since, include_test=admin.sandbox)
    # The file carries users' data out of the bot: who took it is worth keeping.
    await admin.record(actor_of(message), "export_deposits", None, {"period": name, "rows": export.rows})
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M")
    await message.reply_document(BufferedInputFile(export.data, filename=f"deposits-{name}-{stamp}.csv"),
                                 caption=t("admin.deposits.export-caption", period=name, rows=export.rows))


def build_router() -> Router:
    router = Router(name="admin-deposits")
    router.message.register(stats_command, Command("stats"))
    router.message.register(pending_command, Command("pending"))
    router.message.register(deposit_command, Command("deposit"))
    router.message.register(find_command, Command("find"))
    router.message.register(confirm_command, Command("confirm"))
    router.message.register(export_command, Command("export"))
    router.callback_query.register(deposit_button, AdminDepositCb.filter())
    return router
