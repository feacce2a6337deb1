"""Typed notifications: one kind per thing worth telling someone, with a frozen payload that carries all its message
needs, queued in the outbox inside the transaction that made it true.

Services build a payload and `queue` it; the Telegram side renders it (handlers/ui/notifications.py); the delivery
worker only carries it. A payload is stored as JSON with `"v": 2`; rows written before typed payloads (no "v") are
still read (`due` rebuilds them from the deposit and user they name), so an upgrade loses no message.

To add a kind: a member of `NotificationKind`, a frozen dataclass subclassing `Payload` with `kind` set, an entry in
PAYLOADS, and a case in the renderer (its test fails on a kind it can't render).
"""
from __future__ import annotations

import logging
import types
from dataclasses import dataclass, fields, is_dataclass
from decimal import Decimal
from enum import Enum
from functools import cache
from typing import Any, ClassVar, Union, get_args, get_origin, get_type_hints

from services import admin_reports
from services.admin_reports import Stats
from services.store import Database, Deposit, User
from services.store import deposits, outbox, users
from services.store.db import Conn

log = logging.getLogger(__name__)

VERSION = 2


class NotificationKind(str, Enum):
    DEPOSIT_PAID = "deposit_paid"
    DEPOSIT_EXPIRED = "deposit_expired"
    DEPOSIT_CARD = "deposit_card"            # edit the deposit's card to show its new status
    DEPOSIT_INTERRUPTED = "deposit_interrupted"  # edit "Creating your deposit..." after a crash lost the creation
    BALANCE_ADJUSTED = "balance_adjusted"
    BALANCE_CHARGED = "balance_charged"      # the operator's service charged the balance (the API)
    BALANCE_REFUNDED = "balance_refunded"    # ... and gave some of a charge back
    ADMIN_DEPOSIT_PAID = "admin_deposit_paid"
    ADMIN_DEPOSIT_EXPIRED = "admin_deposit_expired"
    ADMIN_DEPOSIT_REVIEW = "admin_deposit_review"
    ADMIN_MANUAL_DEPOSIT = "admin_manual_deposit"
    ADMIN_DAILY_SUMMARY = "admin_daily_summary"
    ADMIN_WEBHOOK_REJECTED = "admin_webhook_rejected"
    ADMIN_GATEWAY_ERROR = "admin_gateway_error"
    ADMIN_TEST_MONEY = "admin_test_money"    # the database holds sandbox money while a real gateway runs


@dataclass(frozen=True)
class Payload:
    """What one notification says: everything its message needs, so delivery reads nothing else."""

    kind: ClassVar[NotificationKind]

    def admin_event(self) -> str | None:
        """The ADMIN_EVENTS switch that governs this line (None: always sent)."""
        return None

    def reader(self) -> User | None:
        """The customer it is written to, in their language; None: the default language (staff lines)."""
        return None


# --- to the customer ---

@dataclass(frozen=True)
class DepositPaid(Payload):
    kind = NotificationKind.DEPOSIT_PAID
    deposit: Deposit
    user: User | None
    credited_cents: int
    bonus_cents: int
    balance_cents: int | None
    bonus_lost: bool = False

    def reader(self) -> User | None:
        return self.user


@dataclass(frozen=True)
class DepositExpired(Payload):
    kind = NotificationKind.DEPOSIT_EXPIRED
    deposit: Deposit
    user: User | None

    def reader(self) -> User | None:
        return self.user


@dataclass(frozen=True)
class DepositCard(Payload):
    """The deposit as it is now, shown in place of the card the customer was given."""

    kind = NotificationKind.DEPOSIT_CARD
    deposit: Deposit
    user: User | None
    message_id: int
    promised_bonus_cents: int = 0  # the coupon bonus the confirmation promised, said again while it waits

    def reader(self) -> User | None:
        return self.user


@dataclass(frozen=True)
class DepositInterrupted(Payload):
    """The creation was lost (the process died during the gateway call): nothing was created, try again."""

    kind = NotificationKind.DEPOSIT_INTERRUPTED
    deposit: Deposit
    user: User | None
    message_id: int  # the "Creating your deposit..." message

    def reader(self) -> User | None:
        return self.user


@dataclass(frozen=True)
class BalanceAdjusted(Payload):
    kind = NotificationKind.BALANCE_ADJUSTED
    user: User | None
    cents: int
    reason: str
    balance_cents: int

    def reader(self) -> User | None:
        return self.user


@dataclass(frozen=True)
class BalanceCharged(Payload):
    """"−$2.00 · SMS number · Balance: $3.15": an API charge, as the customer hears of it."""

    kind = NotificationKind.BALANCE_CHARGED
    user: User | None
    amount_cents: int
    description: str
    balance_cents: int

    def reader(self) -> User | None:
        return self.user


@dataclass(frozen=True)
class BalanceRefunded(Payload):
    kind = NotificationKind.BALANCE_REFUNDED
    user: User | None
    amount_cents: int
    description: str     # the charge's
    balance_cents: int

    def reader(self) -> User | None:
        return self.user


# --- to the admin chat ---

@dataclass(frozen=True)
class AdminDepositPaid(Payload):
    kind = NotificationKind.ADMIN_DEPOSIT_PAID
    deposit: Deposit
    user: User | None
    credited_cents: int
    bonus_cents: int
    txid: str | None = None
    review: bool = False  # paid, but not as asked: a person should look
    raw_status: str | None = None
    note: str | None = None

    def admin_event(self) -> str | None:
        return "review" if self.review else "paid"


@dataclass(frozen=True)
class AdminDepositExpired(Payload):
    kind = NotificationKind.ADMIN_DEPOSIT_EXPIRED
    deposit: Deposit
    user: User | None

    def admin_event(self) -> str | None:
        return "expired"


@dataclass(frozen=True)
class AdminDepositReview(Payload):
    kind = NotificationKind.ADMIN_DEPOSIT_REVIEW
    deposit: Deposit
    reason: str

    def admin_event(self) -> str | None:
        return "review"


@dataclass(frozen=True)
class AdminManualDeposit(Payload):
    kind = NotificationKind.ADMIN_MANUAL_DEPOSIT
    deposit: Deposit
    user: User | None

    def admin_event(self) -> str | None:
        return "manual"


@dataclass(frozen=True)
class AdminDailySummary(Payload):
    kind = NotificationKind.ADMIN_DAILY_SUMMARY
    since: int
    stats: Stats

    def admin_event(self) -> str | None:
        return "summary"


@dataclass(frozen=True)
class AdminWebhookRejected(Payload):
    kind = NotificationKind.ADMIN_WEBHOOK_REJECTED
    source: str
    reason: str
    ip: str
    callback_id: int | None = None

    def admin_event(self) -> str | None:
        return "webhook"


@dataclass(frozen=True)
class AdminGatewayError(Payload):
    kind = NotificationKind.ADMIN_GATEWAY_ERROR
    gateway: str
    detail: str

    def admin_event(self) -> str | None:
        return "gateway"


@dataclass(frozen=True)
class AdminTestMoney(Payload):
    """Said once per state of the test money, at start with a real gateway: it is there, uncounted, and how to
    remove it."""

    kind = NotificationKind.ADMIN_TEST_MONEY
    cents: int
    users: int


PAYLOADS: dict[NotificationKind, type[Payload]] = {cls.kind: cls for cls in (
    DepositPaid, DepositExpired, DepositCard, DepositInterrupted, BalanceAdjusted, BalanceCharged, BalanceRefunded,
    AdminDepositPaid,
    AdminDepositExpired, AdminDepositReview, AdminManualDeposit, AdminDailySummary, AdminWebhookRejected,
    AdminGatewayError, AdminTestMoney)}


# --- writing ---

async def queue(tx: Conn, payload: Payload, *, chat_id: int, dedupe_key: str,
                user_id: int | None = None, deposit_id: int | None = None) -> int | None:
    """Queue a notification once per dedupe key, in the caller's transaction; a repeated event queues nothing."""
    return await outbox.enqueue(tx, kind=payload.kind.value, chat_id=chat_id, dedupe_key=dedupe_key,
                                user_id=user_id, deposit_id=deposit_id, payload=to_json(payload))


@dataclass(frozen=True)
class ToQueue:
    """A notification to queue with others in one statement (`queue_all`); the arguments of `queue`."""

    payload: Payload
    chat_id: int
    dedupe_key: str
    user_id: int | None = None
    deposit_id: int | None = None


async def queue_all(tx: Conn, items: list[ToQueue]) -> None:
    """`queue` for each item, in one statement (one round trip on PostgreSQL)."""
    await outbox.enqueue_many(tx, [(q.payload.kind.value, q.chat_id, q.dedupe_key, q.user_id, q.deposit_id,
                                    to_json(q.payload)) for q in items])


def to_json(payload: Payload) -> dict[str, Any]:
    encoded = _encode(payload)
    assert isinstance(encoded, dict)
    return {"v": VERSION, **encoded}


def from_json(kind: NotificationKind, data: dict[str, Any]) -> Payload:
    """The payload of a row written with "v": 2; ValueError (or KeyError, TypeError) if it isn't one."""
    decoded = _decode(PAYLOADS[kind], {k: v for k, v in data.items() if k != "v"})
    assert isinstance(decoded, Payload)
    return decoded


_PLAIN = frozenset({str, int, bool, float, type(None)})


_FIELD_NAMES: dict[type, tuple[str, ...] | None] = {}


def _field_names(cls: type) -> tuple[str, ...] | None:
    """A dataclass's field names (None for any other class), looked up once per class: the settling transaction
    encodes two or three payloads, and `fields()` per value was most of its Python time (bench/README.md)."""
    try:
        return _FIELD_NAMES[cls]
    except KeyError:
        names = _FIELD_NAMES[cls] = tuple(f.name for f in fields(cls)) if is_dataclass(cls) else None
        return names


def _encode(value: Any) -> Any:
    cls = type(value)
    if cls in _PLAIN:  # exactly these types: a str-based Enum still goes below and is written as its value
        return value
    names = _field_names(cls)
    if names is not None:
        return {name: _encode(getattr(value, name)) for name in names}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (tuple, list, frozenset)):
        return [_encode(item) for item in value]
    return value


@cache
def _hints(cls: type) -> dict[str, Any]:
    return get_type_hints(cls)


def _decode(target: Any, value: Any) -> Any:
    origin = get_origin(target)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(target) if arg is not type(None)]
        if value is None:
            if len(options) == len(get_args(target)):
                raise ValueError("None where a value is required")
            return None
        return _decode(options[0], value)
    if origin is tuple:
        return tuple(_decode(get_args(target)[0], item) for item in value)
    if is_dataclass(target):
        hints = _hints(target)  # type: ignore[arg-type]
        return target(**{f.name: _decode(hints[f.name], value[f.name])  # type: ignore[operator]
                         for f in fields(target) if f.init and f.name in value})
    if isinstance(target, type) and issubclass(target, Enum):
        return target(value)
    if target is Decimal:
        return Decimal(str(value))
    if target is int and isinstance(value, bool) or not isinstance(value, target):
        raise ValueError(f"expected {target.__name__}, got {type(value).__name__}")
    return value


# --- reading (the delivery worker) ---

@dataclass(frozen=True)
class Queued:
    """A notification due for delivery; `payload` is None when the row can't be read (`problem` says why)."""

    id: int
    chat_id: int
    attempts: int
    payload: Payload | None
    problem: str | None = None


async def claim(db: Database, *, owner: str, now: int, lease_seconds: int, limit: int) -> list[Queued]:
    """Lease the due notifications to `owner`, the sending instance (see outbox.claim), and read them."""
    async with db.transaction() as tx:
        rows = await outbox.claim(tx, owner=owner, now=now, lease_seconds=lease_seconds, limit=limit)
    queued = []
    for row in rows:
        try:
            kind = NotificationKind(row.kind)
            if row.payload.get("v") == VERSION:
                payload: Payload | None = from_json(kind, row.payload)
            else:
                payload = await _from_legacy(db, kind, row.payload, user_id=row.user_id, deposit_id=row.deposit_id)
        except (ValueError, KeyError, TypeError) as exc:
            queued.append(Queued(row.id, row.chat_id, row.attempts, None, f"unreadable {row.kind}: {exc!r}"[:200]))
            continue
        if payload is None:
            queued.append(Queued(row.id, row.chat_id, row.attempts, None, f"{row.kind}: its deposit is gone"))
        else:
            queued.append(Queued(row.id, row.chat_id, row.attempts, payload))
    return queued


async def _from_legacy(db: Database, kind: NotificationKind, p: dict[str, Any], *, user_id: int | None,
                       deposit_id: int | None) -> Payload | None:
    """A row queued before typed payloads: its untyped fields, plus the deposit and user read as they are now."""
    conn = db.reader
    if kind is NotificationKind.ADMIN_WEBHOOK_REJECTED:
        return AdminWebhookRejected(str(p.get("source", "?")), str(p.get("reason", "?")), str(p.get("ip", "?")),
                                    p.get("callback_id"))
    if kind is NotificationKind.ADMIN_GATEWAY_ERROR:
        return AdminGatewayError(str(p.get("gateway", "?")), str(p.get("detail", "?")))
    if kind is NotificationKind.ADMIN_DAILY_SUMMARY:
        since = int(p["since"])
        return AdminDailySummary(since, await admin_reports.stats(db, since))
    if kind is NotificationKind.BALANCE_ADJUSTED:
        user = await users.get(conn, user_id) if user_id is not None else None
        return BalanceAdjusted(user, int(p["cents"]), str(p["reason"]), int(p["balance_cents"]))
    deposit = await deposits.get(conn, deposit_id) if deposit_id is not None else None
    if deposit is None:
        return None
    user = await users.get(conn, deposit.user_id)
    match kind:
        case NotificationKind.DEPOSIT_PAID:
            return DepositPaid(deposit, user, int(p["credited_cents"]), int(p["bonus_cents"]), p.get("balance_cents"),
                               bool(p.get("bonus_lost")))
        case NotificationKind.DEPOSIT_EXPIRED:
            return DepositExpired(deposit, user)
        case NotificationKind.DEPOSIT_CARD:
            return DepositCard(deposit, user, int(p["message_id"]))
        case NotificationKind.ADMIN_DEPOSIT_PAID:
            return AdminDepositPaid(deposit, user, int(p["credited_cents"]), int(p["bonus_cents"]), p.get("txid"),
                                    bool(p.get("review")), p.get("raw_status"), p.get("note"))
        case NotificationKind.ADMIN_DEPOSIT_EXPIRED:
            return AdminDepositExpired(deposit, user)
        case NotificationKind.ADMIN_DEPOSIT_REVIEW:
            return AdminDepositReview(deposit, str(p.get("reason", "?")))
        case NotificationKind.ADMIN_MANUAL_DEPOSIT:
            return AdminManualDeposit(deposit, user)
    raise ValueError(f"no legacy reading for {kind.value}")
