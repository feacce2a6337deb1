"""The background pass over open deposits: expire, poll, and clean up creations that never finished.

Everything it needs is in the database, so after a restart it simply carries on.
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services import notifications
from services.alerts import alert_operator
from services.gateways.base import Gateway, GatewayError, GatewayMisconfigured
from services.gateways.capabilities import Capabilities
from services.notifications import DepositInterrupted
from services.settlement import COUNTDOWN, Outcome, Settler, enqueue_card_refresh
from services.store import Database, Deposit, DepositStatus, now_ts
from services.store import coupons, deposits, users

log = logging.getLogger(__name__)

LATE_PAYMENT_GRACE_SECONDS = 60 * 60   # keep polling this long past expiry: late transfers still settle
# A 'creating' row this old lost its gateway call (crash, shutdown): three times a gateway call's 20 s timeout, so
# a creation still in flight in another instance is never taken for lost. The first pass after a restart finds it.
STUCK_CREATION_SECONDS = 60
MAX_BACKOFF_SECONDS = 15 * 60
# How long a deposit taken for a poll is left alone by the other instances: longer than a gateway call (20 s).
# If this instance dies mid-poll, another one polls the deposit when the lease ends.
CHECK_LEASE_SECONDS = 60


def next_check_delay(age_seconds: int, interval: int) -> int:
    """Poll soon after creation, then less often: payments usually land in the first minutes."""
    if age_seconds < 10 * 60:
        factor = 1
    elif age_seconds < 60 * 60:
        factor = 2
    else:
        factor = 5
    return min(interval * factor, MAX_BACKOFF_SECONDS)


@dataclass
class PassReport:
    checked: int = 0
    credited: int = 0
    expired: int = 0
    errors: int = 0
    abandoned: int = 0


class Reconciler:
    def __init__(self, db: Database, gateway: Gateway, settler: Settler, *, interval_seconds: int,
                 admin_chat_id: int | None = None, capabilities: Capabilities | None = None) -> None:
        self._db = db
        self._capabilities = capabilities if capabilities is not None else Capabilities.of(gateway)
        self._admin_chat_id = admin_chat_id
        self._gateway = gateway
        self._settler = settler
        self._interval = interval_seconds

    async def run_forever(self) -> None:
        while True:
            try:
                report = await self.run_once()
                if report.checked or report.expired or report.abandoned:
                    log.info("reconciler pass: %s", report)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - one bad pass must not stop future ones
                log.exception("reconciler pass failed")
            await asyncio.sleep(self._interval)

    async def run_once(self, now: int | None = None) -> PassReport:
        now = now_ts() if now is None else now
        report = PassReport()
        await self._abandon_stuck_creations(now, report)
        for deposit in await deposits.pending_past_expiry(self._db.reader, now):
            if await self._settler.expire(deposit.id):
                report.expired += 1
        await self._refresh_countdowns(now)
        async with self._db.transaction() as tx:
            due = await deposits.lease_due_for_check(tx, now, lease_seconds=CHECK_LEASE_SECONDS)
        for deposit in due:
            if deposit.gateway != self._gateway.name or deposit.order_id is None:
                continue  # made by a gateway this process doesn't run; left for the one that does
            report.checked += 1
            try:
                await self._check(deposit, now, report)
            except Exception:  # noqa: BLE001 - one deposit's problem must not starve the others
                report.errors += 1
                log.exception("reconciler: deposit %s could not be checked; retrying later", deposit.id)
                await self._schedule(deposit.id, now + self._backoff(deposit), failed=True)
        return report

    async def _refresh_countdowns(self, now: int) -> None:
        """Keep each waiting card's "about N min" true: a card edit each time the shown number changes, never
        twice for one number (the outbox's dedupe key), so at most once a minute per card."""
        waiting = await deposits.pending_with_cards(self._db.reader, now)
        if not waiting:
            return
        async with self._db.transaction() as tx:
            for deposit in waiting:
                await enqueue_card_refresh(tx, deposit, f"{COUNTDOWN}{deposit.minutes_left(now)}")
        if self._settler.after_commit is not None:
            self._settler.after_commit()

    async def _check(self, deposit: Deposit, now: int, report: PassReport) -> None:
        assert deposit.order_id is not None
        try:
            update = await self._gateway.fetch_payment(deposit.order_id)
        except GatewayError as exc:
            report.errors += 1
            backoff = self._backoff(deposit)
            log.warning("reconciler: deposit %s check failed (%s); next in %ss", deposit.id,
                        exc.operator_detail, backoff)
            async with self._db.transaction() as tx:
                await deposits.schedule_check(tx, deposit.id, next_check_at=now + backoff, failed=True)
                if isinstance(exc, GatewayMisconfigured):
                    await alert_operator(tx, admin_chat_id=self._admin_chat_id, gateway=self._gateway.name,
                                         error=exc)
            return
        result = await self._settler.settle_payment(update)
        if result.outcome is Outcome.CREDITED:
            report.credited += 1
        elif result.outcome in (Outcome.UNCHANGED, Outcome.FLAGGED, Outcome.CLOSED):
            # A deposit the gateway closed is followed like any unpaid one: late payments still settle.
            keep_until = (deposit.expires_at or now) + LATE_PAYMENT_GRACE_SECONDS
            if now < keep_until:
                delay = next_check_delay(now - deposit.created_at, self._interval)
                await self._schedule(deposit.id, now + delay, failed=False)
            else:
                await self._schedule(deposit.id, None, failed=False)
                await self._cancel_at_gateway(deposit)

    async def _cancel_at_gateway(self, deposit: Deposit) -> None:
        """Polling is over and nothing was paid: where the gateway can, cancel so late funds are refused."""
        cancel = self._capabilities.cancel
        if cancel is None or deposit.order_id is None:
            return
        try:
            await cancel.cancel_deposit(deposit.order_id)
            log.info("deposit %s: cancelled at %s after the late-payment grace period", deposit.id,
                     self._gateway.name)
        except GatewayError as exc:
            log.warning("deposit %s: could not cancel at %s: %s", deposit.id, self._gateway.name, exc.operator_detail)

    def _backoff(self, deposit: Deposit) -> int:
        return min(self._interval * (1 << min(deposit.check_failures + 1, 10)), MAX_BACKOFF_SECONDS)

    async def _schedule(self, deposit_id: int, at: int | None, *, failed: bool) -> None:
        async with self._db.transaction() as tx:
            await deposits.schedule_check(tx, deposit_id, next_check_at=at, failed=failed)

    async def _abandon_stuck_creations(self, now: int, report: PassReport) -> None:
        for deposit in await deposits.stale_creating(self._db.reader, now - STUCK_CREATION_SECONDS):
            async with self._db.transaction() as tx:
                if await deposits.set_status(tx, deposit.id, DepositStatus.FAILED,
                                             only_from=(DepositStatus.CREATING,),
                                             failure_reason="create: interrupted"):
                    await coupons.release(tx, deposit.id)
                    if deposit.message_id is not None and deposit.message_chat_id is not None:
                        # The user still sees "Creating your deposit...": tell them nothing was created.
                        user = await users.get(tx, deposit.user_id)
                        await notifications.queue(tx, DepositInterrupted(deposit, user, deposit.message_id),
                                                  chat_id=deposit.message_chat_id, user_id=deposit.user_id,
                                                  deposit_id=deposit.id, dedupe_key=f"deposit:{deposit.id}:interrupted")
                    report.abandoned += 1
                    log.info("deposit %s: creation interrupted (a restart?); marked failed, coupon released",
                             deposit.id)
