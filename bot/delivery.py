"""Delivers the notification outbox to Telegram: at least once, paced, and never lost on a restart.

A row is marked sent right after Telegram accepts it. Retries happen only for sends that failed,
so a retry never repeats a message that already arrived (except if the process dies in the instant
between Telegram's answer and the commit, which at-least-once delivery cannot rule out).
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import sqlite3
import time
from typing import Any

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from handlers.i18n import Locales, Translator
from handlers.admin.deposits import show_button, stats_text
from handlers.ui import views
from services import admin_reports
from services.matrix import network_title
from services.money import format_usd
from services.store import Database, Notification, now_ts
from services.store import deposits, outbox, users

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
DUE_BATCH = 50
MAX_BACKOFF_SECONDS = 600

# Which ADMIN_EVENTS switch governs each kind of admin-chat line.
ADMIN_EVENT_OF_KIND = {
    "admin_deposit_paid": "paid", "admin_deposit_review": "review", "admin_deposit_expired": "expired",
    "admin_gateway_error": "gateway", "admin_webhook_rejected": "webhook", "admin_manual_deposit": "manual",
    "admin_daily_summary": "summary",
}


class DeliveryWorker:
    def __init__(self, bot: Bot, db: Database, locales: Locales, *, sandbox: bool, poll_seconds: float = 1.0,
                 global_rate_per_second: float = 25.0, per_chat_interval_seconds: float = 1.0,
                 admin_events: frozenset[str] | None = None) -> None:
        self._admin_events = admin_events  # None: all
        self._bot = bot
        self._db = db
        self._locales = locales
        self._sandbox = sandbox
        self._poll_seconds = poll_seconds
        self._min_gap = 1.0 / global_rate_per_second
        self._per_chat_gap = per_chat_interval_seconds
        self._last_send = 0.0
        self._last_by_chat: dict[int, float] = {}
        self._paused_until = 0.0  # after a 429: Telegram asked the whole bot to wait
        self._sent_unrecorded: set[int] = set()  # accepted by Telegram, not yet marked sent in the database
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Deliver now instead of at the next poll (called after a settlement commits)."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.run_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - keep delivering whatever one row does
                log.exception("delivery pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._poll_seconds)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def run_once(self) -> int:
        """Deliver everything due now, batch after batch: a full outbox is drained at the paced rate, not per poll."""
        await self._record_sent()
        delivered = 0
        while True:
            due = await outbox.due(self._db.reader, now_ts(), limit=DUE_BATCH)
            # Rows delivered but not yet recorded are due too; they are skipped, never sent again.
            batch = [n for n in due if n.id not in self._sent_unrecorded]
            for notification in batch:
                if await self._deliver(notification):
                    delivered += 1
            if len(due) < DUE_BATCH or not batch:
                return delivered

    def _turned_off(self, n: Notification) -> bool:
        event = ADMIN_EVENT_OF_KIND.get(n.kind)
        if event == "paid" and n.payload.get("review"):
            event = "review"  # a paid-but-different amount is a review line, whatever "paid" says
        return self._admin_events is not None and event is not None and event not in self._admin_events

    async def _deliver(self, n: Notification) -> bool:
        if self._turned_off(n):
            async with self._db.transaction() as tx:
                await outbox.give_up(tx, n.id, error="not sent: turned off in ADMIN_EVENTS")
            return False
        await self._pace(n.chat_id)
        try:
            await self._send_following_upgrade(n)
        except TelegramRetryAfter as exc:
            self._paused_until = time.monotonic() + exc.retry_after
            await self._retry(n, delay=exc.retry_after, error=f"retry after {exc.retry_after}s")
            return False
        except TelegramForbiddenError as exc:
            await self._give_up(n, f"forbidden: {exc.message}")  # blocked the bot, or kicked it from the chat
            return False
        except TelegramBadRequest as exc:
            if "not modified" in exc.message:
                pass  # the card already shows this status (the user's own tap updated it)
            elif "message to edit not found" in exc.message or "message can't be edited" in exc.message:
                pass  # the card is gone; the separate notification carries the news
            else:
                await self._give_up(n, f"bad request: {exc.message}")
                return False
        except (TelegramNetworkError, TelegramServerError) as exc:
            await self._retry(n, delay=min(2 ** n.attempts * 5, MAX_BACKOFF_SECONDS), error=type(exc).__name__)
            return False
        # Telegram has it now: whatever happens to the database, this process never sends it again.
        self._sent_unrecorded.add(n.id)
        await self._record_sent()
        return True

    async def _send_following_upgrade(self, n: Notification) -> None:
        """A group upgraded to a supergroup keeps its people under a new id: deliver there, and say what to change."""
        try:
            await self._send(n)
        except TelegramMigrateToChat as exc:
            log.warning("chat %s became the supergroup %s; if it is the admin chat, set ADMIN_CHAT_ID=%s and restart "
                        "(delivering there meanwhile)", n.chat_id, exc.migrate_to_chat_id, exc.migrate_to_chat_id)
            await self._send(dataclasses.replace(n, chat_id=exc.migrate_to_chat_id))

    async def _record_sent(self) -> None:
        """Mark delivered rows sent; if the database is busy, keep them in memory and try again next pass."""
        for notification_id in sorted(self._sent_unrecorded):
            try:
                async with self._db.transaction() as tx:
                    await outbox.mark_sent(tx, notification_id)
            except sqlite3.OperationalError as exc:
                log.warning("notification %s was delivered but can't be recorded yet (%s); will retry", notification_id,
                            exc)
                return
            self._sent_unrecorded.discard(notification_id)

    async def _pace(self, chat_id: int) -> None:
        """Stay under Telegram's limits: a global rate, one message per second per chat, and any 429 pause."""
        now = time.monotonic()
        wait = max(self._last_send + self._min_gap - now, self._paused_until - now,
                   self._last_by_chat.get(chat_id, 0.0) + self._per_chat_gap - now)
        if wait > 0:
            await asyncio.sleep(wait)
        self._last_send = self._last_by_chat[chat_id] = time.monotonic()

    async def _retry(self, n: Notification, *, delay: float, error: str) -> None:
        if n.attempts + 1 >= MAX_ATTEMPTS:
            await self._give_up(n, f"too many attempts; last: {error}")
            return
        log.warning("notification %s (%s to %s) will be retried in %ss: %s", n.id, n.kind, n.chat_id, delay, error)
        async with self._db.transaction() as tx:
            await outbox.retry_later(tx, n.id, at=now_ts() + max(1, int(delay + 0.999)), error=error)

    async def _give_up(self, n: Notification, error: str) -> None:
        log.warning("notification %s (%s to %s) dropped: %s", n.id, n.kind, n.chat_id, error)
        async with self._db.transaction() as tx:
            await outbox.give_up(tx, n.id, error=error)

    async def _translator(self, n: Notification) -> Translator:
        if n.kind.startswith("admin_") or n.user_id is None:
            return self._locales.for_admin()
        user = await users.get(self._db.reader, n.user_id)
        return self._locales.get(self._locales.pick(user.locale, user.telegram_lang) if user else None)

    async def _send(self, n: Notification) -> None:
        t = await self._translator(n)
        deposit = await deposits.get(self._db.reader, n.deposit_id) if n.deposit_id is not None else None
        p: dict[str, Any] = n.payload
        if n.kind == "deposit_paid" and deposit is not None:
            await self._bot.send_message(n.chat_id, views.paid_text(
                t, deposit_id=deposit.id, credited_cents=p["credited_cents"], bonus_cents=p["bonus_cents"],
                balance_cents=p.get("balance_cents"), bonus_lost=bool(p.get("bonus_lost"))),
                reply_markup=views.after_payment_keyboard(t))
        elif n.kind == "deposit_expired" and deposit is not None:
            await self._bot.send_message(n.chat_id, views.expired_text(t, deposit),
                                         reply_markup=views.deposit_keyboard(t, deposit, sandbox=self._sandbox))
        elif n.kind == "deposit_card" and deposit is not None:
            text = views.deposit_caption(t, deposit, sandbox=self._sandbox)
            keyboard = views.deposit_keyboard(t, deposit, sandbox=self._sandbox)
            if deposit.is_link:  # a text card, not a photo
                await self._bot.edit_message_text(text, chat_id=n.chat_id, message_id=int(p["message_id"]),
                                                  reply_markup=keyboard)
            else:
                await self._bot.edit_message_caption(chat_id=n.chat_id, message_id=int(p["message_id"]),
                                                     caption=text, reply_markup=keyboard)
        elif n.kind == "balance_adjusted":
            key = "admin.users.notify-debit" if p["cents"] < 0 else "admin.users.notify-credit"
            await self._bot.send_message(n.chat_id, t(key, amount=format_usd(abs(p["cents"])),
                                                      balance=format_usd(p["balance_cents"]), reason=p["reason"]))
        elif n.kind == "admin_deposit_paid" and deposit is not None:
            user = await users.get(self._db.reader, deposit.user_id)
            bonus = bool(p["bonus_cents"])  # a zero bonus is not worth a word
            key = (("admin.paid-review-bonus" if bonus else "admin.paid-review") if p.get("review")
                   else ("admin.paid-bonus" if bonus else "admin.paid"))
            text = t(key, id=deposit.id, user=views.user_label(user, deposit.user_id),
                     amount=format_usd(p["credited_cents"]), asked=format_usd(deposit.amount_cents),
                     coin=deposit.coin, network=network_title(deposit.network),
                     bonus=format_usd(p["bonus_cents"]), gateway=deposit.gateway, txid=p.get("txid") or "—")
            if p.get("note"):
                text += "\n" + t("admin.note", note=p["note"])
            await self._bot.send_message(n.chat_id, text, reply_markup=show_button(t, deposit.id))
        elif n.kind == "admin_deposit_expired" and deposit is not None:
            user = await users.get(self._db.reader, deposit.user_id)
            await self._bot.send_message(n.chat_id, t(
                "admin.expired", id=deposit.id, user=views.user_label(user, deposit.user_id),
                amount=format_usd(deposit.amount_cents), coin=deposit.coin, network=network_title(deposit.network)),
                reply_markup=show_button(t, deposit.id))
        elif n.kind == "admin_deposit_review" and deposit is not None:
            await self._bot.send_message(n.chat_id, t(
                "admin.review", id=deposit.id, gateway=deposit.gateway, reason=p.get("reason", "?"),
                order=deposit.order_id or "—"), reply_markup=show_button(t, deposit.id))
        elif n.kind == "admin_manual_deposit" and deposit is not None:
            user = await users.get(self._db.reader, deposit.user_id)
            await self._bot.send_message(n.chat_id, t(
                "admin.manual-deposit", id=deposit.id, user=views.user_label(user, deposit.user_id),
                amount=format_usd(deposit.amount_cents), method=network_title(deposit.network)),
                reply_markup=show_button(t, deposit.id))
        elif n.kind == "admin_daily_summary":
            since = int(p["since"])
            await self._bot.send_message(n.chat_id, t("admin.summary.title") + "\n\n" + stats_text(
                t, await admin_reports.stats(self._db, since), since))
        elif n.kind == "admin_webhook_rejected":
            await self._bot.send_message(n.chat_id, t("admin.webhook-rejected", source=p.get("source", "?"),
                                                      reason=p.get("reason", "?"), ip=p.get("ip", "?")))
        elif n.kind == "admin_gateway_error":
            await self._bot.send_message(n.chat_id, t("admin.gateway-error", gateway=p.get("gateway", "?"),
                                                      detail=p.get("detail", "?")))
        else:
            log.error("notification %s: nothing to send for kind %r (deposit %s)", n.id, n.kind, n.deposit_id)
