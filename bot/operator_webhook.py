"""Delivers operator events from the outbox to OPERATOR_WEBHOOK_URL: signed, at least once, retried for days.

Transport only, like bot/delivery.py for Telegram: the events were written whole by services.operator_events in the
transaction of the change they report. A row is marked sent only after a 2xx answer; a non-2xx answer, a timeout
or a refused connection is retried with backoff (5 s doubling to an hour) for RETRY_FOR_SECONDS, so a restart or
a receiver that is down for a day loses nothing. Receivers drop repeats by the event's `id`.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from contextlib import suppress

import aiohttp

from services.store import Database, Notification, now_ts
from services.store import outbox

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Topup-Signature"
RETRY_FOR_SECONDS = 72 * 3600
FIRST_RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 3600
TIMEOUT_SECONDS = 10


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The Topup-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed with the secret>."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def retry_delay(attempts: int) -> int:
    """Seconds before the next try, after `attempts` failed ones: 5, 10, 20, ... up to an hour."""
    return min(MAX_RETRY_SECONDS, FIRST_RETRY_SECONDS * 2 ** min(attempts, 20))


class EventSender:
    def __init__(self, db: Database, url: str, secret: str, *, poll_seconds: float = 1.0) -> None:
        self._db = db
        self._url = url
        self._secret = secret
        self._poll_seconds = poll_seconds
        self._wake = asyncio.Event()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, db: Database, settings: object) -> EventSender | None:
        url = getattr(settings, "operator_webhook_url", None)
        secret = getattr(settings, "operator_webhook_secret", None)
        if url is None or secret is None:
            return None
        return cls(db, url, secret.value)

    def wake(self) -> None:
        self._wake.set()

    async def run_forever(self) -> None:
        try:
            while True:
                try:
                    await self.deliver_due()
                except Exception:  # noqa: BLE001 - the sender must outlive any one bad row or outage
                    log.exception("operator events: delivery round failed")
                self._wake.clear()
                with suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._poll_seconds)
        finally:
            await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def deliver_due(self) -> int:
        """Send every event that is due, oldest first; returns how many the receiver acknowledged."""
        acknowledged = 0
        for event in await outbox.due(self._db.reader, now_ts(), limit=100, channel=outbox.OPERATOR):
            if await self._send(event):
                acknowledged += 1
        return acknowledged

    async def _send(self, event: Notification) -> bool:
        body = json.dumps(event.payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "topup-bot",
                   SIGNATURE_HEADER: sign(self._secret, int(time.time()), body)}
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS))
        try:
            async with self._session.post(self._url, data=body, headers=headers, allow_redirects=False) as answer:
                status = answer.status
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:200]
        else:
            if 200 <= status < 300:
                async with self._db.transaction() as tx:
                    await outbox.mark_sent(tx, event.id)
                return True
            error = f"HTTP {status}"
        await self._failed(event, error)
        return False

    async def _failed(self, event: Notification, error: str) -> None:
        event_id = event.payload.get("id")
        async with self._db.transaction() as tx:
            if now_ts() - event.created_at > RETRY_FOR_SECONDS:
                log.error("operator event %s (%s) dropped after %s attempts: %s", event_id, event.kind,
                          event.attempts + 1, error)
                await outbox.give_up(tx, event.id, error=error)
            else:
                delay = retry_delay(event.attempts)
                log.warning("operator event %s (%s) not delivered (%s); retrying in %ss", event_id, event.kind,
                            error, delay)
                await outbox.retry_later(tx, event.id, at=now_ts() + delay, error=error)
