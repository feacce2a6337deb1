"""Settlement: the one place where a gateway's word turns into money on a user's balance.

Guarantee: a deposit is credited at most once, whatever path reports it (poll, webhook, sandbox,
admin) and however often or concurrently. The ledger's UNIQUE idempotency key makes the credit a
single row; the status change, coupon bonus and notifications are written in the same transaction,
so a crash leaves either all of them or none.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_FLOOR
from enum import Enum

from services.coupons import promised_bonus
from services.gateways.base import PaymentState, PaymentUpdate
from services.notifications import (
    AdminDepositExpired,
    AdminDepositPaid,
    AdminDepositReview,
    DepositCard,
    DepositExpired,
    DepositPaid,
    Payload,
    ToQueue,
    queue,
    queue_all,
)
from services.store import Database, Deposit, DepositStatus, LedgerKind, User
from services.operator_events import EventType, OperatorEvents
from services.store import coupons, deposits, ledger, outbox, users
from services.store.db import Conn, retry_on_deadlock

log = logging.getLogger(__name__)

# States from which a deposit can still be paid or closed: a confirmed payment is credited even
# after we expired it or the user cancelled it, because the money did arrive.
_UNPAID = (DepositStatus.PENDING, DepositStatus.EXPIRED, DepositStatus.CANCELLED)
# A reported payment more than this many times the deposit's value is more likely a gateway bug than a
# generous customer: it is held for a person to check instead of credited (exactly the factor is credited).
MAX_CREDIT_FACTOR = 10
# How far a gateway's USD figure may exceed what its coins are worth at the deposit's own quote before the two are
# said to disagree (and the deposit is held): 1 % of that worth, at least one cent. Even within it, the credit never
# exceeds that worth.
TOLERANCE_PERCENT = 1


@dataclass(frozen=True)
class CreditVerdict:
    """What a paying report is worth: `credit_cents` to credit, or a `hold` (key, reason) for a person."""

    credit_cents: int = 0
    hold: tuple[str, str] | None = None


def _held(key: str, reason: str) -> CreditVerdict:
    return CreditVerdict(hold=(key, reason))


def tolerance_cents(worth_cents: int) -> int:
    return max(1, worth_cents * TOLERANCE_PERCENT // 100)


def judge_credit(deposit: Deposit, update: PaymentUpdate) -> CreditVerdict:
    """Cross-check a paid or underpaid report against the deposit before any money moves (pure; SECURITY.md).

    1. The invoice's own figures, when reported, must be the ones recorded at creation: its USD value, its
       currency (always USD), the coin amount due and the coin.
    2. The worth of what arrived is the coin amount received valued at the deposit's own quote
       (received x expected_credit / pay_amount); when the gateway gives no coin amount, the deposit's expected
       credit stands in, so an unverifiable overpayment is never credited.
    3. The claim (the gateway's USD figure, or the expected credit for a plain "paid") may exceed that worth by
       at most the tolerance, else the figures disagree and the deposit is held; the credit is the lesser of the two.
    4. An underpayment never credits more than the expected credit: one claiming more is held.
    5. More than MAX_CREDIT_FACTOR times the expected credit is held, however consistent the figures look.
    """
    expected = deposit.expected_credit_cents
    if update.invoice_currency is not None and update.invoice_currency.upper() != "USD":
        return _held("invoice-currency", f"the invoice is in {update.invoice_currency[:16]}, the bot asked USD")
    if update.invoice_usd_cents is not None and update.invoice_usd_cents != expected:
        return _held("invoice-amount", f"the invoice says {update.invoice_usd_cents} cents, "
                                       f"the deposit is for {expected}")
    expected_coin = (deposit.pay_currency or deposit.coin).upper()
    if update.currency is not None and update.currency.upper() != expected_coin:
        return _held(f"currency:{update.currency[:16]}", f"paid in {update.currency[:16]}, "
                                                         f"the deposit is in {expected_coin}")
    if update.due_amount is not None and deposit.pay_amount is not None and update.due_amount != deposit.pay_amount:
        return _held("invoice-due", f"the invoice asks {update.due_amount} {expected_coin}, "
                                    f"the deposit asked {deposit.pay_amount}")
    if update.received_amount is not None and deposit.pay_amount is not None and deposit.pay_amount > 0:
        worth = int((update.received_amount * expected / deposit.pay_amount).to_integral_value(ROUND_FLOOR))
        worth_text = f"{update.received_amount} {expected_coin} received, worth {worth} cents at the deposit's quote"
    else:
        worth = expected
        worth_text = f"no coin amount to value, so at most the expected {expected} cents"
    if update.state is PaymentState.UNDERPAID:
        if update.paid_cents is None or update.paid_cents <= 0:
            return _held("no-amount", "underpaid without a usable amount")
        if update.paid_cents > expected:
            return _held("underpaid-over", f"reported underpaid, yet {update.paid_cents} cents of {expected}")
        claim = update.paid_cents
    else:
        claim = update.paid_cents if update.paid_cents is not None else expected
    if claim <= 0:
        return _held("no-amount", "paid without a usable amount")
    if claim > worth + tolerance_cents(worth):
        return _held("figures-disagree", f"reported {claim} cents; {worth_text}")
    credit = min(claim, worth)
    if credit <= 0:
        return _held("no-amount", f"nothing to credit: {worth_text}")
    if credit > expected * MAX_CREDIT_FACTOR:
        return _held("implausible-amount", f"reported paid amount {credit} cents is implausible")
    return CreditVerdict(credit_cents=credit)


class Outcome(str, Enum):
    CREDITED = "credited"
    ALREADY_CREDITED = "already_credited"
    CLOSED = "closed"            # the gateway says it will never be paid
    FLAGGED = "flagged"          # needs a person (refund, hold, nonsense amount); nothing credited
    UNCHANGED = "unchanged"
    UNKNOWN_ORDER = "unknown_order"


@dataclass(frozen=True)
class Settlement:
    outcome: Outcome
    deposit: Deposit | None = None
    credited_cents: int = 0
    bonus_cents: int = 0
    balance_cents: int | None = None
    card_news: bool = False  # nothing about money changed, but the card has news to show ("payment seen")


class Settler:
    def __init__(self, db: Database, *, admin_chat_id: int | None, events: OperatorEvents | None = None) -> None:
        self._db = db
        self._admin_chat_id = admin_chat_id
        self._events = events or OperatorEvents(enabled=False)
        # Called after a transaction that queued notifications commits (the delivery worker's wake-up).
        self.after_commit: Callable[[], None] | None = None

    @retry_on_deadlock
    async def settle_payment(self, update: PaymentUpdate) -> Settlement:
        result = await self._db.run(lambda tx: self.settle_in(tx, update))
        self.settled(update, result)
        return result

    async def settle_in(self, tx: Conn, update: PaymentUpdate) -> Settlement:
        """The settlement's writes, in the caller's transaction (a callback's record and verdict share it). Call
        `settled` once it has committed. Awaits nothing but `tx`, so it can run inside `Database.run`."""
        # The deposit's row first (then the user's through the ledger, then the coupon's): the one lock order
        # that keeps this from deadlocking with expire/cancel on PostgreSQL.
        deposit = await deposits.lock_by_order(tx, update.gateway, update.order_id)
        if deposit is None:
            log.warning("settlement: %s reported %s for unknown order %r (source %s); nothing credited",
                        update.gateway, update.state.value, update.order_id, update.source)
            return Settlement(Outcome.UNKNOWN_ORDER)
        if update.state in (PaymentState.PAID, PaymentState.UNDERPAID):
            return await self._credit(tx, deposit, update)
        if update.state in (PaymentState.FAILED, PaymentState.CANCELLED):
            return await self._close(tx, deposit, update)
        if update.state in (PaymentState.REFUNDED, PaymentState.HELD):
            await self._flag(tx, deposit, f"status:{update.raw_status or update.state.value}",
                             reason=update.note or update.raw_status or update.state.value)
            return Settlement(Outcome.FLAGGED, deposit)
        if update.seen and await deposits.mark_seen(tx, deposit.id):
            # Not money, but news: the card says "payment seen, waiting for confirmations".
            seen = await deposits.get(tx, deposit.id)
            assert seen is not None
            await enqueue_card_refresh(tx, seen, "seen")
            return Settlement(Outcome.UNCHANGED, seen, card_news=True)
        return Settlement(Outcome.UNCHANGED, deposit)

    def settled(self, update: PaymentUpdate, result: Settlement) -> None:
        """After the commit: wake the delivery worker and log what changed."""
        if result.card_news and self.after_commit is not None:
            self.after_commit()
        if result.outcome in (Outcome.UNCHANGED, Outcome.UNKNOWN_ORDER):
            return
        if self.after_commit is not None:
            self.after_commit()
        log.info("settlement: deposit %s order %s via %s: %s (credited %s, bonus %s)",
                 result.deposit.id if result.deposit else None, update.order_id, update.source,
                 result.outcome.value, result.credited_cents, result.bonus_cents)

    async def _credit(self, tx: Conn, deposit: Deposit, update: PaymentUpdate) -> Settlement:
        if deposit.status is DepositStatus.PAID:
            return Settlement(Outcome.ALREADY_CREDITED, deposit)
        if update.source == "admin":
            # Staff confirmed the payment (/confirm, also after a hold): the deposit's expected credit, nothing more.
            verdict = CreditVerdict(credit_cents=deposit.expected_credit_cents)
        else:
            verdict = judge_credit(deposit, update)
        if verdict.hold is not None:
            key, reason = verdict.hold
            await deposits.note_hold(tx, deposit.id, f"held: {reason}"[:500])
            await self._flag(tx, deposit, key, reason=reason)
            return Settlement(Outcome.FLAGGED, deposit)
        credit = verdict.credit_cents
        line = await ledger.append(tx, user_id=deposit.user_id, amount_cents=credit, kind=LedgerKind.DEPOSIT,
                                   idempotency_key=ledger.deposit_key(deposit.id), deposit_id=deposit.id,
                                   note=f"{update.gateway} {update.order_id} via {update.source}", test=deposit.test)
        if line is None:
            return Settlement(Outcome.ALREADY_CREDITED, deposit)
        await self._events.balance_changed(tx, line)

        bonus, bonus_lost = await self._coupon_bonus(tx, deposit, credit)
        fresh = await deposits.mark_paid(tx, deposit.id, credited_cents=credit, bonus_cents=bonus, txid=update.txid)
        await self._events.deposit_event(tx, EventType.DEPOSIT_PAID, deposit.id, "paid")
        user = await users.get(tx, deposit.user_id)  # its balance as the ledger's trigger left it
        # A sandbox payment shows the sandbox's balance; a real one the real money only.
        balance = None if user is None else user.balance_shown(sandbox=deposit.test)
        review = (update.state is PaymentState.UNDERPAID or credit != deposit.expected_credit_cents
                  or update.note is not None)
        # The customer's message and the admin line: one INSERT for both; then the card, after the message.
        await queue_all(tx, [item for item in (
            ToQueue(DepositPaid(fresh, user, credit, bonus, balance, bonus_lost), chat_id=deposit.chat_id,
                    user_id=deposit.user_id, deposit_id=deposit.id, dedupe_key=f"deposit:{deposit.id}:paid"),
            self._admin(fresh, "paid", AdminDepositPaid(fresh, user, credit, bonus, txid=update.txid, review=review,
                                                        raw_status=update.raw_status, note=update.note)),
        ) if item is not None])
        await self._enqueue_card(tx, fresh, user)
        return Settlement(Outcome.CREDITED, fresh, credit, bonus, balance)

    async def _coupon_bonus(self, tx: Conn, deposit: Deposit, credit: int) -> tuple[int, bool]:
        """This deposit's coupon bonus; (0, True) when it can't apply (gone meanwhile, or paid below its minimum)."""
        if deposit.coupon_id is None:
            return 0, False
        hold = await coupons.hold_for_deposit(tx, deposit.id)
        if hold is None:
            # Released when the deposit expired; take it again if this user still can.
            retaken = await coupons.hold(tx, deposit.coupon_id, deposit.user_id, deposit.id)
            if not retaken or not await coupons.take_use(tx, deposit.coupon_id):
                if retaken:
                    await coupons.release(tx, deposit.id)
                return 0, True
        coupon = await coupons.get(tx, deposit.coupon_id)
        if coupon is None or credit < coupon.min_amount_cents:
            await coupons.release(tx, deposit.id)
            return 0, coupon is not None
        bonus = coupon.bonus_for(min(credit, deposit.expected_credit_cents))  # never a bonus on an overpayment
        if bonus > 0:
            line = await ledger.append(tx, user_id=deposit.user_id, amount_cents=bonus, kind=LedgerKind.BONUS,
                                       idempotency_key=ledger.bonus_key(deposit.id), deposit_id=deposit.id,
                                       note=f"coupon {coupon.code}", test=deposit.test)
            await self._events.balance_changed(tx, line)
        await coupons.redeem(tx, deposit.id, bonus)
        return bonus, False

    async def _close(self, tx: Conn, deposit: Deposit, update: PaymentUpdate) -> Settlement:
        status = DepositStatus.CANCELLED if update.state is PaymentState.CANCELLED else DepositStatus.FAILED
        if not await deposits.set_status(tx, deposit.id, status, only_from=_UNPAID,
                                         failure_reason=f"gateway:{update.raw_status or update.state.value}"):
            return Settlement(Outcome.UNCHANGED, deposit)
        # Polling goes on (the reconciler's schedule, up to an hour past expiry): a payment the gateway still
        # reports after saying `cancel` is credited like any late payment.
        await coupons.release(tx, deposit.id)
        fresh = await deposits.get(tx, deposit.id)
        assert fresh is not None
        await self._enqueue_card(tx, fresh)
        return Settlement(Outcome.CLOSED, fresh)

    @retry_on_deadlock
    async def expire(self, deposit_id: int) -> bool:
        """Mark an unpaid deposit expired and tell the user to stop paying; polling goes on for late payments."""
        async with self._db.transaction() as tx:
            # set_status's conditional UPDATE takes the deposit's row lock first, before the coupon's.
            if not await deposits.set_status(tx, deposit_id, DepositStatus.EXPIRED, only_from=(DepositStatus.PENDING,)):
                return False
            deposit = await deposits.get(tx, deposit_id)
            assert deposit is not None
            await coupons.release(tx, deposit_id)
            user = await users.get(tx, deposit.user_id)
            await queue(tx, DepositExpired(deposit, user), chat_id=deposit.chat_id, user_id=deposit.user_id,
                        deposit_id=deposit_id, dedupe_key=f"deposit:{deposit_id}:expired")
            await self._enqueue_card(tx, deposit, user)
            await self._enqueue_admin(tx, deposit, "expired", AdminDepositExpired(deposit, user))
            await self._events.deposit_event(tx, EventType.DEPOSIT_EXPIRED, deposit_id, "expired")
        log.info("deposit %s expired unpaid", deposit_id)
        if self.after_commit is not None:
            self.after_commit()
        return True

    @retry_on_deadlock
    async def cancel(self, deposit_id: int, *, reason: str = "cancelled by user") -> bool:
        """Nobody will pay this deposit (the user gave up, or staff cancelled it). A payment that still arrives is
        credited all the same; the card tells the user not to pay."""
        async with self._db.transaction() as tx:
            # set_status's conditional UPDATE takes the deposit's row lock first, before the coupon's.
            if not await deposits.set_status(tx, deposit_id, DepositStatus.CANCELLED,
                                             only_from=(DepositStatus.PENDING,), failure_reason=reason):
                return False
            await coupons.release(tx, deposit_id)
            deposit = await deposits.get(tx, deposit_id)
            assert deposit is not None
            await self._enqueue_card(tx, deposit)
        if self.after_commit is not None:
            self.after_commit()
        return True

    async def _flag(self, tx: Conn, deposit: Deposit, key: str, *, reason: str) -> None:
        await self._enqueue_admin(tx, deposit, key, AdminDepositReview(deposit, reason))
        await self._events.deposit_event(tx, EventType.DEPOSIT_REVIEW, deposit.id, f"review:{key}", reason=reason)

    async def _enqueue_card(self, tx: Conn, deposit: Deposit, user: User | None = None) -> None:
        """Show the deposit's new status on its card."""
        await enqueue_card_refresh(tx, deposit, deposit.status.value, user)

    async def _enqueue_admin(self, tx: Conn, deposit: Deposit, key: str, payload: Payload) -> None:
        line = self._admin(deposit, key, payload)
        if line is not None:
            await queue_all(tx, [line])

    def _admin(self, deposit: Deposit, key: str, payload: Payload) -> ToQueue | None:
        if self._admin_chat_id is None:
            return None
        return ToQueue(payload, chat_id=self._admin_chat_id, user_id=deposit.user_id, deposit_id=deposit.id,
                       dedupe_key=f"deposit:{deposit.id}:admin:{key}")


async def enqueue_card_refresh(tx: Conn, deposit: Deposit, news: str, user: User | None = None) -> None:
    """Bring the deposit's card up to date, once per piece of news: a status, "seen", or a countdown step
    ("left:<minutes>").

    A status or "seen" replaces any older card update still waiting, so a late retry never puts an outdated card back.
    A countdown step is skipped while another card update waits: that one shows the current countdown anyway (the
    minutes are worked out when it is sent), so a busy outbox never fills with countdowns.
    """
    if deposit.message_id is None or deposit.message_chat_id is None:
        return
    card_key = f"deposit:{deposit.id}:card:"
    if await outbox.queued(tx, card_key + news):
        return
    if news.startswith(COUNTDOWN):
        if await outbox.pending_with_prefix(tx, card_key):
            return
    else:
        await outbox.supersede_prefix(tx, card_key)
    if user is None:
        user = await users.get(tx, deposit.user_id)
    await queue(tx, DepositCard(deposit, user, deposit.message_id, await promised_bonus(tx, deposit)),
                chat_id=deposit.message_chat_id, user_id=deposit.user_id, deposit_id=deposit.id,
                dedupe_key=card_key + news)


COUNTDOWN = "left:"
