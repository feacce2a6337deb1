"""Admin commands about people and money: /user, /credit and /debit (behind the second tap), and /audit."""
from __future__ import annotations

import logging
from html import escape
from datetime import datetime, timezone
from typing import Any

from aiogram import Router
from aiogram.filters import Command, CommandObject
from aiogram.types import Message

from handlers.i18n import Html, Translator
from handlers.admin.confirm import ask, executes
from services.admin import Actor, AdminError, AdminProblem, AdminService, PendingAction
from services.money import AmountError, format_usd, parse_usd
from services.store import Deposit, DepositStatus, LedgerEntry, LedgerKind, User
from services.store import users as user_repo
from services.store.admin import AuditEntry
from services.store.charges import Charge

log = logging.getLogger(__name__)

# Reasons are stored in the ledger and the audit log and shown in lists: long enough for a ticket reference.
REASON_MAX_CHARS = 200
# Telegram refuses messages over 4096 characters; lists are sent in pieces below that, split between lines.
MESSAGE_BUDGET = 3800


# --- shared helpers (coupons.py uses them too) ---

def short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def day_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")


def signed_usd(cents: int) -> str:
    return ("+" if cents > 0 else "") + format_usd(cents)


def display_name(user: User) -> str:
    return f"@{user.username}" if user.username else (user.first_name or str(user.id))


async def reply_lines(message: Message, lines: list[str]) -> None:
    """Reply with the lines, in as many messages as Telegram's length limit needs (never splitting a line)."""
    chunk: list[str] = []
    size = 0
    for line in lines:
        if chunk and size + len(line) + 1 > MESSAGE_BUDGET:
            await message.reply("\n".join(chunk))
            chunk, size = [], 0
        chunk.append(line)
        size += len(line) + 1
    if chunk:
        await message.reply("\n".join(chunk))


# --- /user ---

async def _find_or_say(message: Message, t: Translator, admin: AdminService, query: str) -> User | None:
    """The user, or None after telling the admin there is no such user."""
    try:
        return await admin.find_user(query)
    except AdminError as exc:
        if exc.problem is AdminProblem.USER_AMBIGUOUS:
            candidates = "\n".join(f"• {c.id} · {escape(c.first_name or '')}" for c in exc.details["candidates"])
            await message.reply(t("admin.error.user-ambiguous", query=exc.details.get("query", ""),
                                  candidates=Html(candidates)))
        else:
            await message.reply(t("admin.error.user-not-found", query=exc.details.get("query", "")))
        return None


async def show_user(message: Message, command: CommandObject, t: Translator, admin: AdminService) -> None:
    words = (command.args or "").split()
    if len(words) != 1:
        await message.reply(t("admin.users.user-usage"))
        return
    found = await _find_or_say(message, t, admin, words[0])
    if found is None:
        return
    recent = await admin.recent_deposits(found.id, 5)
    entries = await admin.recent_ledger(found.id, 10)
    charges = await admin.recent_charges(found.id, 5)
    await reply_lines(message, user_card(t, found, recent, entries, charges, sandbox=admin.sandbox))


def user_card(t: Translator, user: User, recent: list[Deposit], entries: list[LedgerEntry],
              charges: list[Charge] | None = None, *, sandbox: bool = False) -> list[str]:
    lines = [t("admin.users.card", name=user.first_name or "—", username=f"@{user.username}" if user.username else "—",
               id=user.id, locale=user.locale or user.telegram_lang or "—", since=day_time(user.created_at),
               balance=format_usd(user.balance_shown(sandbox=sandbox)))]
    if user.test_cents:
        lines.append(t("admin.users.test-money", amount=format_usd(user.test_cents)))
    lines += ["", t("admin.users.charges-title")]
    if not charges:
        lines.append(t("admin.users.no-charges"))
    for c in charges or []:
        lines.append(t("admin.users.charge-line", date=day_time(c.created_at), amount=format_usd(c.amount_cents),
                       description=short(c.description or "—", 80), reference=short(c.reference or "—", 40),
                       refunded=format_usd(c.refunded_cents), id=c.id))
    lines += ["", t("admin.users.deposits-title")]
    if not recent:
        lines.append(t("admin.users.no-deposits"))
    for d in recent:
        lines.append(t("admin.users.deposit-line", id=d.id, date=day_time(d.created_at),
                       amount=format_usd(d.amount_cents), coin=d.coin, network=d.network,
                       status=Html(t(f"deposit.status.{d.status.value}"))))
    lines += ["", t("admin.users.ledger-title")]
    if not entries:
        lines.append(t("admin.users.no-ledger"))
    for entry in entries:
        note = entry.note or (f"#{entry.deposit_id}" if entry.deposit_id is not None else "—")
        # Only values and a separator, no words: the same in every language, so no message of its own.
        lines.append(" · ".join([escape(day_time(entry.created_at)), f"<b>{escape(signed_usd(entry.amount_cents))}</b>",
                                 kind_label(t, entry.kind), escape(short(note, 80))]))
    return lines


def kind_label(t: Translator, kind: LedgerKind) -> str:
    if kind is LedgerKind.DEPOSIT:
        return t("admin.users.kind-deposit")
    if kind is LedgerKind.BONUS:
        return t("admin.users.kind-bonus")
    if kind is LedgerKind.CHARGE:
        return t("admin.users.kind-charge")
    if kind is LedgerKind.REFUND:
        return t("admin.users.kind-refund")
    return t("admin.users.kind-adjustment")


# --- /credit and /debit ---

async def credit(message: Message, command: CommandObject, t: Translator, admin: AdminService) -> None:
    await _ask_adjustment(message, command, t, admin, debit=False)


async def debit(message: Message, command: CommandObject, t: Translator, admin: AdminService) -> None:
    await _ask_adjustment(message, command, t, admin, debit=True)


async def _ask_adjustment(message: Message, command: CommandObject, t: Translator, admin: AdminService, *,
                          debit: bool) -> None:
    """Check everything the admin typed, then show what will happen and wait for the second tap."""
    usage_key = "admin.users.debit-usage" if debit else "admin.users.credit-usage"
    parts = (command.args or "").split(maxsplit=2)
    if len(parts) < 2:
        await message.reply(t(usage_key))
        return
    try:
        cents = parse_usd(parts[1], thousands=False)  # no signs, at most two decimals, no separators
    except AmountError:
        await message.reply(t("admin.users.bad-amount", amount=short(parts[1], 40)) + "\n\n" + t(usage_key))
        return
    reason = " ".join(parts[2].split()) if len(parts) == 3 else ""
    if not reason:
        await message.reply(t("admin.users.no-reason") + "\n\n" + t(usage_key))
        return
    if len(reason) > REASON_MAX_CHARS:
        await message.reply(t("admin.users.reason-too-long", limit=REASON_MAX_CHARS))
        return
    target = await _find_or_say(message, t, admin, parts[0])
    if target is None:
        return
    delta = -cents if debit else cents
    balance = target.balance_shown(sandbox=admin.sandbox)
    after = balance + delta
    if after < 0 and not admin.allows_negative_balance:
        # Refused now, not after the second tap: the admin sees the balance and can debit what is there.
        await message.reply(t("admin.users.over-balance", amount=format_usd(cents), who=display_name(target),
                              id=target.id, balance=format_usd(balance)))
        return
    summary_key = "admin.users.debit-summary" if debit else "admin.users.credit-summary"
    summary = t(summary_key, amount=format_usd(cents), who=display_name(target), id=target.id,
                balance=format_usd(balance), after=format_usd(after), reason=reason)
    if after < 0:
        summary += "\n" + t("admin.users.goes-negative")
    await ask(message, t, admin, "debit" if debit else "credit",
              {"user_id": target.id, "cents": delta, "reason": reason}, Html(summary))


@executes("credit")
async def run_credit(pending: PendingAction, actor: Actor, t: Translator, data: dict[str, Any]) -> str:
    return await _adjust(pending, actor, t, data)


@executes("debit")
async def run_debit(pending: PendingAction, actor: Actor, t: Translator, data: dict[str, Any]) -> str:
    return await _adjust(pending, actor, t, data)


async def _adjust(pending: PendingAction, actor: Actor, t: Translator, data: dict[str, Any]) -> str:
    """The confirmed move; adjust_balance re-checks the balance now, and queues the user's note with it."""
    admin: AdminService = data["admin"]
    balance = await admin.adjust_balance(actor, pending)
    cents = int(pending.payload["cents"])
    target = await user_repo.get(admin.db.reader, int(pending.payload["user_id"]))
    assert target is not None  # adjust_balance just found them
    key = "admin.users.debited" if cents < 0 else "admin.users.credited"
    return t(key, amount=format_usd(abs(cents)), who=display_name(target), id=target.id, balance=format_usd(balance))


# --- /audit ---

async def audit(message: Message, t: Translator, admin: AdminService) -> None:
    entries = await admin.recent_actions(20)
    if not entries:
        await message.reply(t("admin.audit.empty"))
        return
    await reply_lines(message, [t("admin.audit.title", count=len(entries))]
                      + [audit_line(t, entry) for entry in entries])


def audit_line(t: Translator, entry: AuditEntry) -> str:
    line = t("admin.audit.line", id=entry.id, when=day_time(entry.created_at), who=short(entry.actor_name, 40),
             actor_id=entry.actor_id, what=Html(audit_sentence(t, entry)))
    return line + ("\n" + t("admin.audit.reason", reason=short(entry.reason, 120)) if entry.reason else "")


def audit_sentence(t: Translator, entry: AuditEntry) -> str:
    """What the admin did, as a sentence in the admin chat's language (the log stores names and values)."""
    target = (entry.target or "").partition(":")[2]
    d = entry.details
    match entry.action:
        case "credit":
            return t("admin.audit.credit", amount=format_usd(abs(int(d.get("cents", 0)))), user=target)
        case "debit":
            return t("admin.audit.debit", amount=format_usd(abs(int(d.get("cents", 0)))), user=target)
        case "confirm_payment":
            return t("admin.audit.confirm-payment-credited" if d.get("outcome") == "credited"
                     else "admin.audit.confirm-payment-unchanged", deposit=target)
        case "coupon_add":
            return t("admin.audit.coupon-add", code=target, bonus=d.get("bonus", ""))
        case "coupon_off":
            return t("admin.audit.coupon-off", code=target, used=d.get("used", 0))
        case "recheck_deposit":
            status = str(d.get("status", ""))
            return t("admin.audit.recheck", deposit=target,
                     status=Html(t(f"deposit.status.{status}")) if status in _STATUSES else status)
        case "cancel_deposit":
            return t("admin.audit.cancel-deposit", deposit=target)
        case "export_deposits":
            return t("admin.audit.export", rows=d.get("rows", 0), period=d.get("period", ""))
        case "payout":
            return t("admin.audit.payout", reference=target, amount=d.get("amount", ""), coin=d.get("coin", ""),
                     network=d.get("network", ""), address=d.get("address", ""), status=d.get("status", ""))
        case "payout_refresh":
            return t("admin.audit.payout-refresh", reference=target, status=d.get("status", ""))
        case "api_key_create":
            return t("admin.audit.api-key-read-only" if d.get("read_only") else "admin.audit.api-key-create",
                     name=target)
        case "api_key_revoke":
            return t("admin.audit.api-key-revoke", name=target)
        case "external_id_bind":
            return t("admin.audit.external-id-bind", user=target, account=str(d.get("external_id", "")))
        case "external_id_rebind":
            return t("admin.audit.external-id-rebind", user=target, account=str(d.get("external_id", "")),
                     replaced=str(d.get("replaced") or "—"), previous=str(d.get("taken_from_user") or "—"))
        case "sandbox_reset":
            return t("admin.audit.sandbox-reset", user=target, amount=format_usd(abs(int(d.get("cents", 0)))))
    # An action this version doesn't describe (written by a newer one): its name and values, never nothing.
    return t("admin.audit.other", action=entry.action, target=entry.target or "—",
             details=short(describe_details(d), 160) or "—")


_STATUSES = frozenset(status.value for status in DepositStatus)


def describe_details(details: dict[str, Any]) -> str:
    """`cents=-$5.00, outcome=credited`: amounts in cents shown as dollars, everything else as stored."""
    parts = []
    for key, value in details.items():
        if (key == "cents" or key.endswith("_cents")) and isinstance(value, int) and not isinstance(value, bool):
            value = signed_usd(value) if key == "cents" else format_usd(value)
        parts.append(f"{key}={short(str(value), 60)}")
    return ", ".join(parts)


def build_router() -> Router:
    router = Router(name="admin-users")
    router.message.register(show_user, Command("user"))
    router.message.register(credit, Command("credit"))
    router.message.register(debit, Command("debit"))
    router.message.register(audit, Command("audit"))
    return router
