"""Smart CloudPay payouts: checked against the USD caps, written down before the gateway is asked, sent once.

Guarantee: a payout row (status "requested") is committed before the payout call, and the call carries our
reference as `reference_wp`, which the gateway pays at most once. So a crash or a lost answer leaves a row
that says so ("requested" / "unknown"), and retrying it with the same reference can't pay twice.
Caps are in USD: only stablecoins (1:1) can be paid out, because the bot has no exchange rate it could trust.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_CEILING, Decimal
from enum import Enum
from typing import Any

from services.gateways.base import (
    GatewayError,
    GatewayMisconfigured,
    GatewayUnavailable,
    PairUnavailable,
    PayoutGateway,
)
from services.gateways.smartcloudpay import NETWORK_CODES
from services.matrix import STABLECOINS, Pair, all_pairs, network_from_code
from services.store import Database, now_ts
from services.store.db import Conn, Row, execute, fetch_all, fetch_one, fetch_value, insert

GATEWAY = "smartcloudpay"
NETWORKS = tuple(NETWORK_CODES)  # ours: BSC, TRON, ETH

REQUESTED = "requested"  # written, the gateway not (yet) asked or not (yet) answered
UNKNOWN = "unknown"      # asked, but the answer was lost or unclear: it may have been paid
FAILED = "failed"        # refused by the gateway: nothing was sent
# What the gateway may say (undocumented; the fake says processing/completed/failed), reduced to what we act on.
DONE_STATUSES = frozenset({"completed", "complete", "success", "successful", "succeeded", "paid", "sent", "done",
                           "confirmed"})
FAILED_STATUSES = frozenset({FAILED, "fail", "rejected", "cancelled", "canceled", "error", "declined"})
RETRYABLE = frozenset({REQUESTED, UNKNOWN})  # the only rows the gateway may be asked to pay (again)

_AMOUNT_RE = re.compile(r"([0-9]{1,9})(?:[.,]([0-9]{1,8}))?", re.ASCII)
_REFERENCE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}", re.ASCII)
_ADDRESS_RE = {
    "BSC": re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII),
    "ETH": re.compile(r"0x[0-9a-fA-F]{40}", re.ASCII),
    "TRON": re.compile(r"T[1-9A-HJ-NP-Za-km-z]{33}", re.ASCII),
}
_STATUS_RE = re.compile(r"[^a-z0-9_ -]+")


class PayoutProblem(str, Enum):
    """Why a payout was refused before anything was sent."""

    AMOUNT = "amount"            # not a positive number with at most 8 decimals
    COIN = "coin"                # not a stablecoin: no USD rate to check the caps with
    NETWORK = "network"          # not a network Smart CloudPay pays on
    PAIR = "pair"                # the coin does not exist on that network
    ADDRESS = "address"          # not an address of that network
    REFERENCE = "reference"      # not 1-64 letters, digits, _ or -
    DUPLICATE = "duplicate"      # the reference was used for another payout
    OVER_MAX = "over-max"        # above the per-payout cap
    OVER_DAILY = "over-daily"    # today's payouts plus this one exceed the daily cap (UTC day)
    NOT_FOUND = "not-found"


class PayoutError(Exception):
    def __init__(self, problem: PayoutProblem, **details: Any) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.details = details


@dataclass(frozen=True)
class PayoutDraft:
    """A checked payout, not yet written down. `retry`: the reference exists unsent/unknown with these very fields."""

    amount: Decimal
    coin: str
    network: str
    address: str
    reference: str
    usd_cents: int
    today_cents: int  # today's payouts so far, for the confirmation text
    retry: bool = False

    def payload(self) -> dict[str, str]:
        """What the second tap stores, to be checked again when it is pressed."""
        return {"amount": str(self.amount), "coin": self.coin, "network": self.network, "address": self.address,
                "reference": self.reference}


@dataclass(frozen=True)
class Payout:
    id: int
    reference: str
    actor_id: int
    amount: Decimal
    usd_cents: int
    coin: str
    network: str
    address: str
    status: str
    tx_hash: str | None
    detail: str | None
    created_at: int
    updated_at: int

    @classmethod
    def from_row(cls, row: Row) -> Payout:
        return cls(row["id"], row["reference"], row["actor_id"], Decimal(row["amount"]), row["usd_cents"],
                   row["coin"], row["network"], row["address"], row["status"], row["tx_hash"], row["detail"],
                   row["created_at"], row["updated_at"])

    @property
    def is_final(self) -> bool:
        return self.status in DONE_STATUSES or self.status in FAILED_STATUSES


def start_of_utc_day(ts: int) -> int:
    day = datetime.fromtimestamp(ts, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return int(day.timestamp())


def parse_amount(text: str) -> Decimal:
    """Coin units as typed (`25`, `0.5`, `12,75`): no signs, exponents or separators; at most 8 decimals."""
    match = _AMOUNT_RE.fullmatch(text.strip())
    if match is None:
        raise PayoutError(PayoutProblem.AMOUNT)
    whole, fraction = match.group(1), match.group(2)
    amount = Decimal(f"{whole}.{fraction}" if fraction else whole)  # exact: built from the digits typed
    if amount <= 0:
        raise PayoutError(PayoutProblem.AMOUNT)
    return amount


def parse_network(text: str) -> str:
    """Our network name (BSC, TRON, ETH) from ours or Smart CloudPay's own code (bsc, tron, evm)."""
    upper = text.strip().upper()
    if upper in NETWORKS:
        return upper
    ours = network_from_code(NETWORK_CODES, text.strip())
    if ours is None:
        raise PayoutError(PayoutProblem.NETWORK, networks=", ".join(NETWORKS))
    return ours


def gateway_status(answer: dict[str, Any] | None) -> tuple[str | None, str | None]:
    """(status word, tx hash) from a payout answer, whatever it calls them; the word cleaned for display."""
    if not answer:
        return None, None
    raw = next((answer[k] for k in ("status", "payout_status", "state") if isinstance(answer.get(k), str)), None)
    status = _STATUS_RE.sub("", raw.strip().lower())[:32] if raw else None
    tx = next((answer[k] for k in ("tx_hash", "txid", "hash", "transaction_hash") if isinstance(answer.get(k), str)
               and answer[k].strip()), None)
    return status or None, tx.strip()[:128] if tx else None


PAYOUTS_DAILY_LOCK = "payouts:daily-cap"


class PayoutService:
    def __init__(self, db: Database, gateway: PayoutGateway, max_cents: int, daily_max_cents: int) -> None:
        self._db = db
        self._gateway = gateway
        self.max_cents = max_cents
        self.daily_max_cents = daily_max_cents

    # --- before the second tap ---

    async def validate(self, amount: str, coin: str, network: str, address: str, reference: str) -> PayoutDraft:
        """Everything that can be checked without sending: format, pair, address, reference, caps."""
        draft = self._parse(amount, coin, network, address, reference)
        return await self._check(self._db.reader, draft)

    @staticmethod
    def _parse(amount: str, coin: str, network: str, address: str, reference: str) -> PayoutDraft:
        value = parse_amount(amount)
        coin = coin.strip().upper()
        if coin not in STABLECOINS:
            raise PayoutError(PayoutProblem.COIN, coin=coin[:16], coins=", ".join(sorted(STABLECOINS)))
        ours = parse_network(network)
        if Pair(coin, ours) not in all_pairs():
            raise PayoutError(PayoutProblem.PAIR, coin=coin, network=ours)
        address = address.strip()
        if not _ADDRESS_RE[ours].fullmatch(address):
            raise PayoutError(PayoutProblem.ADDRESS, network=ours)
        reference = reference.strip()
        if not _REFERENCE_RE.fullmatch(reference):
            raise PayoutError(PayoutProblem.REFERENCE)
        # A stablecoin counts 1:1 in USD; a fraction of a cent counts as a whole one against the caps.
        cents = int((value * 100).to_integral_value(ROUND_CEILING))
        return PayoutDraft(value, coin, ours, address, reference, cents, 0)

    async def _check(self, conn: Conn, draft: PayoutDraft) -> PayoutDraft:
        existing = await self._row(conn, draft.reference)
        retry = False
        if existing is not None:
            same = (existing.amount, existing.coin, existing.network, existing.address) == (
                draft.amount, draft.coin, draft.network, draft.address)
            if not (same and existing.status in RETRYABLE):
                raise PayoutError(PayoutProblem.DUPLICATE, reference=draft.reference, status=existing.status)
            retry = True
        if draft.usd_cents > self.max_cents:
            raise PayoutError(PayoutProblem.OVER_MAX, usd=draft.usd_cents, limit=self.max_cents)
        today = await self._today_cents(conn, exclude=draft.reference)
        if today + draft.usd_cents > self.daily_max_cents:
            raise PayoutError(PayoutProblem.OVER_DAILY, usd=draft.usd_cents, used=today, limit=self.daily_max_cents)
        return PayoutDraft(draft.amount, draft.coin, draft.network, draft.address, draft.reference, draft.usd_cents,
                           today, retry)

    async def _today_cents(self, conn: Conn, *, exclude: str) -> int:
        """Today's (UTC) payouts that may have moved money: everything not known to have failed."""
        failed = tuple(FAILED_STATUSES)
        marks = ", ".join("?" * len(failed))
        total = await fetch_value(
            conn, f"SELECT COALESCE(SUM(usd_cents), 0) FROM payouts WHERE created_at >= ? AND reference <> ? "
                  f"AND status NOT IN ({marks})", (start_of_utc_day(now_ts()), exclude, *failed))
        return int(total)

    # --- after the second tap ---

    async def request(self, payload: dict[str, Any], actor_id: int) -> Payout:
        """Check again (time has passed, other payouts may have been made) and write the row, in one transaction,
        so two payouts confirmed at once can't both fit under the daily cap. A retry keeps its row."""
        draft = self._parse(str(payload["amount"]), str(payload["coin"]), str(payload["network"]),
                            str(payload["address"]), str(payload["reference"]))
        async with self._db.transaction() as tx:
            # The cap is a sum over many rows, with no one row to lock: on PostgreSQL, whose transactions interleave,
            # a lock on the name makes concurrent requests check the sum one after the other (SQLite's single writer
            # already does).
            await tx.advisory_lock(PAYOUTS_DAILY_LOCK)
            draft = await self._check(tx, draft)
            if not draft.retry:
                now = now_ts()
                await insert(tx, "INSERT INTO payouts (reference, actor_id, amount, usd_cents, coin, network, address, "
                                 "status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                             (draft.reference, actor_id, str(draft.amount), draft.usd_cents, draft.coin,
                              draft.network, draft.address, REQUESTED, now, now))
            row = await self._row(tx, draft.reference)
        assert row is not None
        return row

    async def execute(self, reference: str) -> Payout:
        """Ask the gateway to pay a written-down payout and store its answer. Only an unsent or unknown payout is
        sent: the gateway pays a reference once, so resending an unknown one is safe."""
        payout = await self.status(reference)
        if payout.status not in RETRYABLE:
            return payout
        tx_hash = None
        status: str | None
        detail: str | None
        try:
            answer = await self._gateway.execute_payout(reference=payout.reference, address=payout.address,
                                                        amount=payout.amount, coin=payout.coin,
                                                        network=payout.network)
        except (PairUnavailable, GatewayMisconfigured) as exc:
            status, detail = FAILED, exc.operator_detail  # refused, or our keys were: nothing was sent
        except GatewayError as exc:
            status, detail = UNKNOWN, exc.operator_detail
        else:
            status, tx_hash = gateway_status(answer)
            detail = None
            echoed = answer.get("reference_wp")
            if isinstance(echoed, str) and echoed != payout.reference:
                status, detail = UNKNOWN, f"the gateway answered for another reference {echoed[:64]!r}"
            status = status or "accepted"  # the gateway took it without saying more: still pending
        return await self._store(payout.reference, status, tx_hash, detail)

    async def refresh(self, reference: str) -> Payout:
        """Ask the gateway where a payout stands. A payout it does not know keeps its status: "unknown" stays
        unknown (it may still arrive), so it stays counted and can be retried with the same reference."""
        payout = await self.status(reference)
        answer = await self._gateway.payout_status(reference)
        if answer is None:
            if payout.is_final:
                return payout
            return await self._store(reference, payout.status, None,
                                     "the gateway does not know this reference" if payout.status in RETRYABLE
                                     else payout.detail)
        status, tx_hash = gateway_status(answer)
        if status is None:
            raise GatewayUnavailable(f"Smart CloudPay payout status: no status for {reference}")
        return await self._store(reference, status, tx_hash, None)

    async def _store(self, reference: str, status: str, tx_hash: str | None, detail: str | None) -> Payout:
        async with self._db.transaction() as tx:
            await execute(tx, "UPDATE payouts SET status = ?, tx_hash = COALESCE(?, tx_hash), detail = ?, "
                              "updated_at = ? WHERE reference = ?",
                          (status, tx_hash, detail[:300] if detail else None, now_ts(), reference))
            row = await self._row(tx, reference)
        assert row is not None
        return row

    # --- reading ---

    async def status(self, reference: str) -> Payout:
        """Our own record of one payout."""
        payout = await self._row(self._db.reader, reference)
        if payout is None:
            raise PayoutError(PayoutProblem.NOT_FOUND, reference=reference[:64])
        return payout

    async def by_id(self, payout_id: int) -> Payout:
        row = await fetch_one(self._db.reader, "SELECT * FROM payouts WHERE id = ?", (payout_id,)) \
            if 0 < payout_id < 2**63 else None
        if row is None:
            raise PayoutError(PayoutProblem.NOT_FOUND, reference=str(payout_id))
        return Payout.from_row(row)

    async def history(self, limit: int = 10) -> list[Payout]:
        rows = await fetch_all(self._db.reader, "SELECT * FROM payouts ORDER BY id DESC LIMIT ?", (limit,))
        return [Payout.from_row(r) for r in rows]

    async def today_cents(self) -> int:
        return await self._today_cents(self._db.reader, exclude="")

    @staticmethod
    async def _row(conn: Conn, reference: str) -> Payout | None:
        row = await fetch_one(conn, "SELECT * FROM payouts WHERE reference = ?", (reference,))
        return None if row is None else Payout.from_row(row)
