"""Rendering: every user-visible text and keyboard is built here from translated messages."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Protocol

from aiogram.types import CopyTextButton, InlineKeyboardButton, InlineKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder

from handlers.i18n import Html, Translator
from handlers.ui.keyboard_cache import per_locale
from handlers.ui.callbacks import (
    AmountCb,
    CoinCb,
    LinkCb,
    DepositAction,
    DepositCb,
    FlowAction,
    FlowCb,
    HistoryCb,
    LanguageCb,
    MenuAction,
    MenuCb,
    NetworkCb,
)
from services.coupons import CouponChoice
from services.matrix import LINK_METHODS, network_title
from services.money import format_crypto
from services.explorers import tx_url
from services.payment_uri import payment_uri
from services.store import Deposit, DepositStatus, LedgerEntry, LedgerKind


class Named(Protocol):
    """Anything that names a user: a User, or a deposit row with its user's names."""

    @property
    def username(self) -> str | None: ...

    @property
    def first_name(self) -> str: ...


def user_label(user: Named | None, user_id: int) -> str:
    """How staff see a user: @username (id), else first name (id)."""
    if user is not None and user.username:
        return f"@{user.username} ({user_id})"
    return f"{user.first_name if user else ''} ({user_id})".strip()


@per_locale
def main_menu(t: Translator) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    kb.button(text=t("menu.topup"), callback_data=MenuCb(action=MenuAction.TOPUP))
    kb.button(text=t("menu.balance"), callback_data=MenuCb(action=MenuAction.BALANCE))
    kb.button(text=t("menu.history"), callback_data=MenuCb(action=MenuAction.HISTORY))
    kb.button(text=t("menu.language"), callback_data=MenuCb(action=MenuAction.LANGUAGE))
    kb.button(text=t("menu.help"), callback_data=MenuCb(action=MenuAction.HELP))
    kb.adjust(1, 2, 2)
    return kb.as_markup()


def home_button(t: Translator) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=t("menu.home"), callback_data=MenuCb(action=MenuAction.HOME).pack())


def start_text(t: Translator, first_name: str, balance_cents: int, sandbox: bool) -> str:
    text = t("start.greeting", name=first_name or "👋", balance=t.usd(balance_cents))
    return text + ("\n\n" + t("sandbox.notice") if sandbox else "")


@per_locale
def coins_keyboard(t: Translator, coins: list[str], link_methods: list[str] | None = None) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for coin in coins:
        kb.button(text=coin, callback_data=CoinCb(coin=coin))
    kb.adjust(4)
    for method in link_methods or []:
        kb.row(InlineKeyboardButton(text=t(f"topup.link.{method}"), callback_data=LinkCb(method=method).pack()))
    kb.row(_flow_button(t, FlowAction.CANCEL))
    return kb.as_markup()


def is_link_network(network: str) -> bool:
    return network in LINK_METHODS.values()


@per_locale
def networks_keyboard(t: Translator, coin: str, networks: list[str]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for network in networks:
        kb.button(text=network_title(network, coin), callback_data=NetworkCb(coin=coin, network=network))
    kb.adjust(2)
    kb.row(_flow_button(t, FlowAction.BACK), _flow_button(t, FlowAction.CANCEL))
    return kb.as_markup()


def amount_text(t: Translator, coin: str, network: str, min_cents: int, max_cents: int) -> str:
    if is_link_network(network):
        return t("topup.ask-amount-link", method=network_title(network), min=t.usd(min_cents),
                 max=t.usd(max_cents))
    return t("topup.ask-amount", coin=coin, network=network_title(network, coin), min=t.usd(min_cents),
             max=t.usd(max_cents))


@per_locale
def amount_keyboard(t: Translator, quick_cents: tuple[int, ...]) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for cents in quick_cents:
        kb.button(text=t.usd(cents, drop_zero_cents=True), callback_data=AmountCb(cents=cents))
    kb.adjust(5)
    kb.row(_flow_button(t, FlowAction.BACK), _flow_button(t, FlowAction.CANCEL))
    return kb.as_markup()


@per_locale
def coupon_keyboard(t: Translator) -> InlineKeyboardMarkup:
    """Back returns to the confirmation without a coupon."""
    return InlineKeyboardMarkup(inline_keyboard=[
        [_flow_button(t, FlowAction.BACK), _flow_button(t, FlowAction.CANCEL)],
    ])


def confirm_text(t: Translator, *, coin: str, network: str, amount_cents: int, coupon: CouponChoice | None,
                 sandbox: bool) -> str:
    lines = [t("confirm.title"), ""]
    if is_link_network(network):
        lines.append(t("confirm.method", method=network_title(network)))
    else:
        lines += [t("confirm.coin", coin=coin), t("confirm.network", network=network_title(network, coin))]
    lines.append(t("confirm.amount", amount=t.usd(amount_cents)))
    if coupon is None:
        lines.append(t("confirm.no-coupon"))
    elif coupon.bonus_cents is None:
        lines.append(t("confirm.gateway-coupon", code=coupon.code))
    else:
        lines.append(t("confirm.coupon", code=coupon.code, bonus=t.usd(coupon.bonus_cents)))
        lines.append(t("confirm.total", total=credit_summary(t, amount_cents, coupon.bonus_cents)))
    if sandbox:
        lines += ["", t("sandbox.notice")]
    return "\n".join(lines)


def credit_summary(t: Translator, amount_cents: int, bonus_cents: int) -> Html:
    """What the user will get, written the same on the confirmation and on the card: `$12.50 + $1.25 bonus = $13.75`."""
    if not bonus_cents:
        return Html(t.usd(amount_cents))
    return Html(t("credit.with-bonus", amount=t.usd(amount_cents), bonus=t.usd(bonus_cents),
                  total=t.usd(amount_cents + bonus_cents)))


@per_locale
def confirm_keyboard(t: Translator, *, with_coupon: bool = False) -> InlineKeyboardMarkup:
    """Create first; a coupon is optional, offered here rather than as a step of its own."""
    rows = [[_flow_button(t, FlowAction.CREATE)]]
    if not with_coupon:
        rows.append([_flow_button(t, FlowAction.ADD_COUPON)])
    rows.append([_flow_button(t, FlowAction.BACK), _flow_button(t, FlowAction.CANCEL)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def creating_keyboard(t: Translator, deposit_id: int) -> InlineKeyboardMarkup:
    """While a slow gateway works: Cancel, by deposit id, so it works whatever the conversation did meanwhile."""
    return InlineKeyboardMarkup(inline_keyboard=[[_deposit_button(t, DepositAction.CANCEL, deposit_id)]])


@per_locale
def limits_keyboard(t: Translator) -> InlineKeyboardMarkup:
    """Under a per-user limit: the deposits to pay or cancel are in History."""
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=t("menu.history"), callback_data=MenuCb(action=MenuAction.HISTORY).pack()),
        home_button(t)]])


def _flow_button(t: Translator, action: FlowAction) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=t(f"flow.{action.value}"), callback_data=FlowCb(action=action).pack())


# --- the deposit card: a QR image whose caption and buttons follow the deposit's status ---

def qr_payload(deposit: Deposit) -> str:
    """What the QR code holds: a payment URI (address and amount) where wallets share one, else the address."""
    return _payment_uri(deposit) or deposit.address or ""


def _payment_uri(deposit: Deposit) -> str | None:
    return payment_uri(deposit.pay_currency or deposit.coin, deposit.network, deposit.address, deposit.pay_amount)


def format_time(ts: int) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def deposit_caption(t: Translator, deposit: Deposit, *, sandbox: bool, bonus_cents: int = 0,
                    now: float | None = None) -> str:
    """The card's text; `bonus_cents` is the bonus the confirmation promised (services.coupons.promised_bonus)."""
    seen = deposit.status is DepositStatus.PENDING and deposit.seen_at is not None
    status_line = t("deposit.seen") if seen else t(f"deposit.status.{deposit.status.value}")
    lines = [t("deposit.title", id=deposit.id, status=status_line)]
    now = now if now is not None else time.time()
    if deposit.status is DepositStatus.PAID:
        lines.append(t("deposit.paid-line", amount=t.usd(deposit.credited_cents or 0)))
        if deposit.bonus_cents:
            lines.append(t("deposit.bonus-line", bonus=t.usd(deposit.bonus_cents)))
        return "\n".join(lines + _paid_details(t, deposit, sandbox=sandbox))
    if deposit.status in (DepositStatus.EXPIRED, DepositStatus.CANCELLED, DepositStatus.FAILED):
        lines += ["", t("deposit.do-not-pay-link" if deposit.is_link else "deposit.do-not-send")]
        return "\n".join(lines)
    if deposit.is_link:
        lines += ["", t("deposit.link-pay", amount=t.usd(deposit.amount_cents),
                        method=network_title(deposit.network))]
        if deposit.expires_at:
            lines.append(t("deposit.expires", at=format_time(deposit.expires_at), minutes=deposit.minutes_left(now)))
        lines += [t("deposit.credit", amount=credit_summary(t, deposit.expected_credit_cents, bonus_cents)),
                  t(f"deposit.link-note.{deposit.method}")]
        return "\n".join(lines)
    network = network_title(deposit.network, deposit.coin)
    lines += [
        "",
        t("deposit.send-exactly", amount=format_crypto(deposit.pay_amount) if deposit.pay_amount else "?",
          coin=deposit.pay_currency or deposit.coin),
        t("deposit.network", network=network),
        t("deposit.address", address=deposit.address or "?"),
        "",
        t("deposit.warning", coin=deposit.coin, network=network),
    ]
    if seen:
        lines.append(t("deposit.seen-note"))
    elif deposit.expires_at:
        lines.append(t("deposit.expires", at=format_time(deposit.expires_at), minutes=deposit.minutes_left(now)))
    lines.append(t("deposit.credit", amount=credit_summary(t, deposit.expected_credit_cents, bonus_cents)))
    lines.append(t("deposit.qr-uri" if _payment_uri(deposit) else "deposit.qr-address"))
    if deposit.gateway_coupon:
        lines.append(t("deposit.gateway-coupon", code=deposit.gateway_coupon))
    if sandbox:
        lines += ["", t("sandbox.deposit-notice")]
    return "\n".join(lines)


def _paid_details(t: Translator, deposit: Deposit, *, sandbox: bool) -> list[str]:
    """What was paid, on which network, and the transaction (linked to its explorer where one is standard)."""
    lines = []
    if deposit.is_link:
        lines.append(t("deposit.paid-method", method=network_title(deposit.network)))
    elif deposit.pay_amount is not None:
        lines.append(t("deposit.paid-sent", amount=format_crypto(deposit.pay_amount),
                       coin=deposit.pay_currency or deposit.coin, network=network_title(deposit.network, deposit.coin)))
    if deposit.txid:
        url = None if sandbox else tx_url(deposit.network, deposit.txid)
        shown = deposit.txid if len(deposit.txid) <= 20 else f"{deposit.txid[:8]}…{deposit.txid[-8:]}"
        lines.append(t("deposit.paid-tx-link", url=url, txid=shown) if url else t("deposit.paid-tx", txid=deposit.txid))
    return lines


def deposit_keyboard(t: Translator, deposit: Deposit, *, sandbox: bool) -> InlineKeyboardMarkup | None:
    if deposit.status is DepositStatus.PENDING:
        rows: list[list[InlineKeyboardButton]] = []
        copy = _copy_buttons(t, deposit)
        if copy:
            rows.append(copy)
        if deposit.payment_url:
            rows.append([InlineKeyboardButton(text=t("deposit.open-page"), url=deposit.payment_url)])
        if sandbox:
            rows.append([_deposit_button(t, DepositAction.SIMULATE, deposit.id)])
        rows.append([_deposit_button(t, DepositAction.CHECK, deposit.id),
                     _deposit_button(t, DepositAction.CANCEL, deposit.id)])
        return InlineKeyboardMarkup(inline_keyboard=rows)
    if deposit.status in (DepositStatus.EXPIRED, DepositStatus.CANCELLED, DepositStatus.FAILED):
        return InlineKeyboardMarkup(inline_keyboard=[[
            InlineKeyboardButton(text=t("deposit.new-topup"),
                                 callback_data=MenuCb(action=MenuAction.TOPUP, below=True).pack())]])
    return None


def _copy_buttons(t: Translator, deposit: Deposit) -> list[InlineKeyboardButton]:
    """One tap copies what must be typed exactly: no retyping an address or an amount with eight decimals.

    No gateway we use returns a memo or tag (payment-apis.md: SMSOnline's answer has none); a network that needs
    one would get its own button here once a gateway gives it.
    """
    buttons = []
    if deposit.address and len(deposit.address) <= 256:  # Telegram's copy_text limit
        buttons.append(InlineKeyboardButton(text=t("deposit.copy-address"),
                                            copy_text=CopyTextButton(text=deposit.address)))
    if deposit.pay_amount is not None:
        buttons.append(InlineKeyboardButton(text=t("deposit.copy-amount"),
                                            copy_text=CopyTextButton(text=format_crypto(deposit.pay_amount))))
    return buttons


def _deposit_button(t: Translator, action: DepositAction, deposit_id: int) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=t(f"deposit.{action.value}"),
                                callback_data=DepositCb(action=action, deposit_id=deposit_id).pack())


# --- notifications ---

def paid_text(t: Translator, *, deposit_id: int, credited_cents: int, bonus_cents: int, balance_cents: int | None,
              bonus_lost: bool) -> str:
    lines = [t("paid.title", id=deposit_id), t("paid.credited", amount=t.usd(credited_cents))]
    if bonus_cents:
        lines.append(t("paid.bonus", bonus=t.usd(bonus_cents)))
    if bonus_lost:
        lines.append(t("paid.bonus-lost"))
    if balance_cents is not None:
        lines.append(t("paid.balance", balance=t.usd(balance_cents)))
    return "\n".join(lines)


def after_payment_keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[
        InlineKeyboardButton(text=t("menu.topup"), callback_data=MenuCb(action=MenuAction.TOPUP, below=True).pack()),
        InlineKeyboardButton(text=t("menu.balance"),
                             callback_data=MenuCb(action=MenuAction.BALANCE, below=True).pack()),
    ]])


def expired_text(t: Translator, deposit: Deposit) -> str:
    return t("expired.message", id=deposit.id, coin=deposit.coin, network=network_title(deposit.network, deposit.coin),
             address=deposit.address or "?")


# --- balance, history, language ---

def history_text(t: Translator, deposits: list[Deposit], page: int, pages: int,
                 spends: list[LedgerEntry] | None = None) -> str:
    """Deposits a page at a time; on the first page also the latest charges and refunds (the operator's API)."""
    spent = history_spends(t, spends or [])
    if not deposits:
        return t("history.empty") + ("\n\n" + spent if spent else "")
    lines = [t("history.title", page=page + 1, pages=pages), ""]
    for d in deposits:
        created = datetime.fromtimestamp(d.created_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        line = t("history.line", id=d.id, date=created, amount=t.usd(d.amount_cents), coin=d.coin,
                 network=d.network, status=Html(t(f"deposit.status.{d.status.value}")))
        if d.status is DepositStatus.PAID and d.credited_cents is not None:
            line += " " + t("history.credited", amount=t.usd(d.credited_cents + (d.bonus_cents or 0)))
        lines.append(line)
    if spent:
        lines += ["", spent]
    return "\n".join(lines)


def history_spends(t: Translator, spends: list[LedgerEntry]) -> str:
    if not spends:
        return ""
    lines = [t("history.spent-title")]
    for entry in spends:
        date = datetime.fromtimestamp(entry.created_at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        key = "history.refund-line" if entry.kind is LedgerKind.REFUND else "history.charge-line"
        lines.append(t(key, date=date, amount=t.usd(abs(entry.amount_cents)), description=entry.note or "—"))
    return "\n".join(lines)


def history_keyboard(t: Translator, page: int, pages: int, deposits: list[Deposit]) -> InlineKeyboardMarkup:
    """Paging, plus a button per deposit still waiting for payment that shows its card (address, QR) again."""
    rows = [[InlineKeyboardButton(text=t("deposit.show", id=d.id),
                                  callback_data=DepositCb(action=DepositAction.SHOW, deposit_id=d.id).pack())]
            for d in deposits if d.status is DepositStatus.PENDING]
    nav: list[InlineKeyboardButton] = []
    if page > 0:
        nav.append(InlineKeyboardButton(text=t("history.prev"), callback_data=HistoryCb(page=page - 1).pack()))
    if page + 1 < pages:
        nav.append(InlineKeyboardButton(text=t("history.next"), callback_data=HistoryCb(page=page + 1).pack()))
    if nav:
        rows.append(nav)
    rows.append([home_button(t)])
    return InlineKeyboardMarkup(inline_keyboard=rows)


def language_keyboard(t: Translator, choices: list[tuple[str, str]], current: str) -> InlineKeyboardMarkup:
    kb = InlineKeyboardBuilder()
    for code, name in choices:
        kb.button(text=("✅ " if code == current else "") + name, callback_data=LanguageCb(code=code))
    kb.adjust(2)
    kb.row(home_button(t))
    return kb.as_markup()


def support_line(t: Translator, contact: str | None) -> str:
    """The operator's SUPPORT_CONTACT as a closing line (empty when not set), for Help and failure screens."""
    return "\n\n" + t("support.line", contact=contact) if contact else ""


@per_locale
def back_home_keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=[[home_button(t)]])


def spend_text(t: Translator, *, refund: bool, amount_cents: int, description: str, balance_cents: int) -> str:
    """What a customer is told of an API charge or refund: "−$2.00 · <description> · Balance: $3.15"."""
    key = (("refund.notice" if description else "refund.notice-plain") if refund
           else ("charge.notice" if description else "charge.notice-plain"))
    return t(key, amount=t.usd(amount_cents), description=description, balance=t.usd(balance_cents))
