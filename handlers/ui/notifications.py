"""Renders a typed notification into the Telegram message that carries it; the delivery worker only sends it."""
from __future__ import annotations

from dataclasses import dataclass

from aiogram.types import InlineKeyboardMarkup

from handlers.admin.deposits import show_button, stats_text
from handlers.i18n import Locales, Translator
from handlers.ui import views
from services.matrix import network_title
from services.money import format_usd
from services.notifications import (
    AdminDailySummary,
    AdminDepositExpired,
    AdminDepositPaid,
    AdminDepositReview,
    AdminGatewayError,
    AdminTestMoney,
    AdminManualDeposit,
    AdminWebhookRejected,
    BalanceAdjusted,
    BalanceCharged,
    BalanceRefunded,
    DepositCard,
    DepositExpired,
    DepositInterrupted,
    DepositPaid,
    Payload,
)


@dataclass(frozen=True)
class Outgoing:
    """One Bot API call: a new message, or (edit_message_id set) an edit of the text or caption of one."""

    text: str
    keyboard: InlineKeyboardMarkup | None = None
    edit_message_id: int | None = None
    caption: bool = False  # the edited message is a photo (the deposit card with its QR code)


class NotificationRenderer:
    def __init__(self, locales: Locales, *, sandbox: bool) -> None:
        self._locales = locales
        self._sandbox = sandbox

    def translator(self, payload: Payload) -> Translator:
        """Staff lines in the admin chat's language; a customer's in their own, as the bot speaks to them elsewhere."""
        user = payload.reader()
        if user is None:
            return self._locales.for_admin()
        return self._locales.get(self._locales.pick(user.locale, user.telegram_lang))

    def render(self, payload: Payload) -> Outgoing:
        t = self.translator(payload)
        match payload:
            case DepositPaid():
                return Outgoing(views.paid_text(t, deposit_id=payload.deposit.id, credited_cents=payload.credited_cents,
                                                bonus_cents=payload.bonus_cents, balance_cents=payload.balance_cents,
                                                bonus_lost=payload.bonus_lost), views.after_payment_keyboard(t))
            case DepositExpired():
                return Outgoing(views.expired_text(t, payload.deposit),
                                views.deposit_keyboard(t, payload.deposit, sandbox=self._sandbox))
            case DepositCard():
                deposit = payload.deposit
                return Outgoing(views.deposit_caption(t, deposit, sandbox=self._sandbox,
                                                      bonus_cents=payload.promised_bonus_cents),
                                views.deposit_keyboard(t, deposit, sandbox=self._sandbox),
                                edit_message_id=payload.message_id, caption=not deposit.is_link)
            case DepositInterrupted():
                return Outgoing(t("topup.interrupted"), views.main_menu(t), edit_message_id=payload.message_id)
            case BalanceAdjusted():
                key = "admin.users.notify-debit" if payload.cents < 0 else "admin.users.notify-credit"
                return Outgoing(t(key, amount=t.usd(abs(payload.cents)), balance=t.usd(payload.balance_cents),
                                  reason=payload.reason))
            case BalanceCharged() | BalanceRefunded():
                return Outgoing(views.spend_text(t, refund=isinstance(payload, BalanceRefunded),
                                                 amount_cents=payload.amount_cents, description=payload.description,
                                                 balance_cents=payload.balance_cents))
            case AdminTestMoney():
                return Outgoing(t("admin.test-money-notice", amount=format_usd(payload.cents), users=payload.users))
            case AdminDepositPaid():
                deposit = payload.deposit
                bonus = bool(payload.bonus_cents)  # a zero bonus is not worth a word
                key = (("admin.paid-review-bonus" if bonus else "admin.paid-review") if payload.review
                       else ("admin.paid-bonus" if bonus else "admin.paid"))
                text = t(key, id=deposit.id,
                         user=views.user_label(payload.user, deposit.user_id),
                         amount=format_usd(payload.credited_cents), asked=format_usd(deposit.amount_cents),
                         coin=deposit.coin, network=network_title(deposit.network),
                         bonus=format_usd(payload.bonus_cents), gateway=deposit.gateway, txid=payload.txid or "—")
                if payload.note:
                    text += "\n" + t("admin.note", note=payload.note)
                return Outgoing(text, show_button(t, deposit.id))
            case AdminDepositExpired():
                deposit = payload.deposit
                return Outgoing(t("admin.expired", id=deposit.id, user=views.user_label(payload.user, deposit.user_id),
                                  amount=format_usd(deposit.amount_cents), coin=deposit.coin,
                                  network=network_title(deposit.network)), show_button(t, deposit.id))
            case AdminDepositReview():
                deposit = payload.deposit
                return Outgoing(t("admin.review", id=deposit.id, gateway=deposit.gateway, reason=payload.reason,
                                  order=deposit.order_id or "—"), show_button(t, deposit.id))
            case AdminManualDeposit():
                deposit = payload.deposit
                return Outgoing(t("admin.manual-deposit", id=deposit.id,
                                  user=views.user_label(payload.user, deposit.user_id),
                                  amount=format_usd(deposit.amount_cents), method=network_title(deposit.network)),
                                show_button(t, deposit.id))
            case AdminDailySummary():
                return Outgoing(t("admin.summary.title") + "\n\n" + stats_text(t, payload.stats, payload.since))
            case AdminWebhookRejected():
                return Outgoing(t("admin.webhook-rejected", source=payload.source, reason=payload.reason,
                                  ip=payload.ip))
            case AdminGatewayError():
                return Outgoing(t("admin.gateway-error", gateway=payload.gateway, detail=payload.detail))
        raise ValueError(f"no rendering for {payload.kind.value}")
