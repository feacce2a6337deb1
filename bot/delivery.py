"""Delivers the notification outbox to Telegram: at least once, paced, and never lost on a restart.

Transport only: what a message says comes from the renderer it is handed (handlers/ui/notifications.py).

A row is marked sent right after Telegram accepts it. Retries happen only for sends that failed,
so a retry never repeats a message that already arrived (except if the process dies in the instant
between Telegram's answer and the commit, which at-least-once delivery cannot rule out).
"""
from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import time

from aiogram import Bot
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramMigrateToChat,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from handlers.ui.notifications import NotificationRenderer, Outgoing
from services import notifications
from services.notifications import Queued
from services.store import Database, now_ts
from services.store import outbox
from services.store.db import store_busy_errors

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 12
# Rows are leased a few at a time: a sender that dies holds back at most this many until their lease ends.
DUE_BATCH = 10
LEASE_SECONDS = 10
LEASE_MARGIN_SECONDS = 3  # stop sending from a batch whose lease is about to end, and lease afresh
MAX_BACKOFF_SECONDS = 600


class DeliveryWorker:
    def __init__(self, bot: Bot, db: Database, renderer: NotificationRenderer, *, poll_seconds: float = 1.0,
                 global_rate_per_second: float = 25.0, per_chat_interval_seconds: float = 1.0,
                 admin_events: frozenset[str] | None = None) -> None:
        self._admin_events = admin_events  # None: all
        self._bot = bot
        self._db = db
        self._renderer = renderer
        self._poll_seconds = poll_seconds
        self._min_gap = 1.0 / global_rate_per_second
        self._per_chat_gap = per_chat_interval_seconds
        self._last_send = 0.0
        self._last_by_chat: dict[int, float] = {}
        self._paused_until = 0.0  # after a 429: Telegram asked the whole bot to wait
        self._sent_unrecorded: set[int] = set()  # accepted by Telegram, not yet marked sent in the database
        self._wake = asyncio.Event()
        # Who holds a lease: unique per process, so a restarted instance never mistakes a dead one's rows for its own.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"

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
            due = await notifications.claim(self._db, owner=self.owner, now=now_ts(), lease_seconds=LEASE_SECONDS,
                                            limit=DUE_BATCH)
            leased_until = time.monotonic() + LEASE_SECONDS - LEASE_MARGIN_SECONDS
            # Rows delivered but not yet recorded are due too; they are skipped, never sent again.
            batch = [n for n in due if n.id not in self._sent_unrecorded]
            for notification in batch:
                if time.monotonic() > leased_until:
                    break  # the rest goes back into the next lease (ours again), never sent on an expired one
                if await self._deliver(notification):
                    delivered += 1
            if len(due) < DUE_BATCH or not batch:
                return delivered

    def _turned_off(self, n: Queued) -> bool:
        event = n.payload.admin_event() if n.payload is not None else None
        return self._admin_events is not None and event is not None and event not in self._admin_events

    async def _deliver(self, n: Queued) -> bool:
        if n.payload is None:
            await self._give_up(n, n.problem or "unreadable")
            return False
        if self._turned_off(n):
            async with self._db.transaction() as tx:
                await outbox.give_up(tx, n.id, error="not sent: turned off in ADMIN_EVENTS")
            return False
        try:
            message = self._renderer.render(n.payload)
        except Exception as exc:  # noqa: BLE001 - one message that can't be written must not block the others
            log.exception("notification %s (%s) can't be rendered", n.id, n.payload.kind.value)
            await self._give_up(n, f"can't render: {type(exc).__name__}")
            return False
        await self._pace(n.chat_id)
        try:
            await self._send_following_upgrade(n.chat_id, message)
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

    async def _record_sent(self) -> None:
        """Mark delivered rows sent; if the database is busy, keep them in memory and try again next pass."""
        for notification_id in sorted(self._sent_unrecorded):
            try:
                async with self._db.transaction() as tx:
                    await outbox.mark_sent(tx, notification_id)
            except store_busy_errors() as exc:
                log.warning("notification %s was delivered but can't be recorded yet (%s); will retry", notification_id,
                            exc)
                return
            self._sent_unrecorded.discard(notification_id)

    async def _pace(self, chat_id: int) -> None:
        """Stay under Telegram's limits: a global rate, one message per second per chat, and any 429 pause."""
        now = time.monotonic()
        due = self._last_send + self._min_gap
        wait = max(due - now, self._paused_until - now,
                   self._last_by_chat.get(chat_id, 0.0) + self._per_chat_gap - now)
        if wait > 0:
            await asyncio.sleep(wait)
        sent = time.monotonic()
        # Paced by the schedule, not by when the loop woke up: waking a few ms late (a busy box) would otherwise
        # stretch every gap (23/s for 25/s, bench/README.md). A late send lets the next come at most half a gap
        # sooner (the full bench run peaked at 27 sends in a second at 25/s, under Telegram's 30).
        self._last_send = max(due, sent - self._min_gap / 2)
        self._last_by_chat[chat_id] = sent

    async def _retry(self, n: Queued, *, delay: float, error: str) -> None:
        if n.attempts + 1 >= MAX_ATTEMPTS:
            await self._give_up(n, f"too many attempts; last: {error}")
            return
        log.warning("notification %s (%s to %s) will be retried in %ss: %s", n.id, _kind(n), n.chat_id, delay,
                    error)
        async with self._db.transaction() as tx:
            await outbox.retry_later(tx, n.id, at=now_ts() + max(1, int(delay + 0.999)), error=error)

    async def _give_up(self, n: Queued, error: str) -> None:
        log.warning("notification %s (%s to %s) dropped: %s", n.id, _kind(n), n.chat_id, error)
        async with self._db.transaction() as tx:
            await outbox.give_up(tx, n.id, error=error)

    async def _send_following_upgrade(self, chat_id: int, message: Outgoing) -> None:
        """A group upgraded to a supergroup keeps its people under a new id: deliver there, and say what to change."""
        try:
            await self._send(chat_id, message)
        except TelegramMigrateToChat as exc:
            log.warning("chat %s became the supergroup %s; if it is the admin chat, set ADMIN_CHAT_ID=%s and restart "
                        "(delivering there meanwhile)", chat_id, exc.migrate_to_chat_id, exc.migrate_to_chat_id)
            await self._send(exc.migrate_to_chat_id, message)

    async def _send(self, chat_id: int, message: Outgoing) -> None:
        if message.edit_message_id is None:
            await self._bot.send_message(chat_id, message.text, reply_markup=message.keyboard)
        elif message.caption:
            await self._bot.edit_message_caption(chat_id=chat_id, message_id=message.edit_message_id,
                                                 caption=message.text, reply_markup=message.keyboard)
        else:
            await self._bot.edit_message_text(message.text, chat_id=chat_id, message_id=message.edit_message_id,
                                              reply_markup=message.keyboard)


def _kind(n: Queued) -> str:
    return n.payload.kind.value if n.payload is not None else "unreadable"
