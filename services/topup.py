"""Top-up use cases for one user: create a deposit, check it, cancel it, simulate paying it (sandbox)."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum

from services.alerts import alert_operator
from services.coupons import CouponChoice, CouponError, CouponProblem, choose_coupon
from services.gateways.base import (
    AmountRejected,
    CouponRejected,
    CreatedDeposit,
    DepositRequest,
    Gateway,
    GatewayError,
    GatewayMisconfigured,
    PairLimits,
    PairUnavailable,
)
from services.gateways.capabilities import Capabilities
from services.matrix import LINK_COIN, LINK_METHODS, STABLECOINS, Matrix, Pair
from services.money import AmountError, AmountLimits, AmountProblem, check_limits, format_crypto
from services.settlement import Settlement, Settler
from services.store import Database, Deposit, DepositStatus, now_ts
from services.store.db import Conn
from services.store import coupons as coupon_repo
from services import notifications
from services.notifications import AdminManualDeposit
from services.store import deposits, users

log = logging.getLogger(__name__)

FIRST_CHECK_DELAY_SECONDS = 20


class TopupProblem(str, Enum):
    """Why a top-up step failed, as the user is told; the value is a message key suffix."""

    PAIR_UNAVAILABLE = "pair-unavailable"
    TEMPORARILY_UNAVAILABLE = "temporarily-unavailable"
    NOT_FOUND = "not-found"            # no such deposit for this user (or not theirs: we don't say which)
    NOT_PENDING = "not-pending"
    NOT_SANDBOX = "not-sandbox"
    AMOUNT_REJECTED = "amount-rejected"  # the gateway's own minimum or maximum for the pair
    TOO_MANY_OPEN = "too-many-open"      # this user already has MAX_OPEN_DEPOSITS waiting for payment
    TOO_MANY_RECENT = "too-many-recent"  # this user started MAX_DEPOSITS_PER_HOUR in the last hour
    ABANDONED = "abandoned"              # the user cancelled while the gateway was creating it


class TopupError(Exception):
    def __init__(self, problem: TopupProblem, *, minimum: str | None = None, maximum: str | None = None,
                 limit: int | None = None) -> None:
        super().__init__(problem.value)
        self.problem = problem
        self.limit = limit
        self.minimum = minimum  # the gateway's wording, e.g. "0.5 USDT"
        self.maximum = maximum


@dataclass(frozen=True)
class UserLimits:
    """Per-user brakes on deposit creation: a flood costs the gateway calls and addresses, not just us."""

    max_open: int = 3
    max_per_hour: int = 10


@dataclass(frozen=True)
class Reservation:
    """A deposit reserved locally (status 'creating') and the request that will ask the gateway for it."""

    request: DepositRequest
    method: str

    @property
    def deposit_id(self) -> int:
        return self.request.deposit_id


@dataclass(frozen=True)
class StatusCheck:
    deposit: Deposit
    settlement: Settlement | None


class TopupService:
    def __init__(self, db: Database, gateway: Gateway, matrix: Matrix, settler: Settler, limits: AmountLimits,
                 *, admin_chat_id: int | None, quick_amounts_cents: tuple[int, ...] = (),
                 first_check_delay_seconds: int = FIRST_CHECK_DELAY_SECONDS,
                 user_limits: UserLimits = UserLimits(), capabilities: Capabilities | None = None) -> None:
        self.db = db
        # What the gateway can do beyond the base protocol; by hand (tests), whatever it implements.
        self.capabilities = capabilities if capabilities is not None else Capabilities.of(gateway)
        self._user_limits = user_limits
        self._first_check_delay = first_check_delay_seconds
        self.quick_amounts_cents = quick_amounts_cents  # offered as buttons at the amount step
        self.gateway = gateway
        self.matrix = matrix
        self.settler = settler
        self.limits = limits
        self._admin_chat_id = admin_chat_id

    def limits_for(self, coin: str, network: str) -> AmountLimits:
        """The operator's limits, tightened by the gateway's own for this pair where they are in USD."""
        gateway_limits = self._gateway_limits(coin, network)
        if gateway_limits is None:
            return self.limits
        low, high = gateway_limits.in_usd_cents(coin)
        return AmountLimits(max(self.limits.min_cents, low or 0),
                            min(self.limits.max_cents, high if high is not None else self.limits.max_cents))

    def coin_minimum(self, coin: str, network: str) -> str | None:
        """The gateway's minimum in coin units, for coins whose USD limits we can't compute (shown, not enforced)."""
        gateway_limits = self._gateway_limits(coin, network)
        if gateway_limits is None or gateway_limits.min_amount is None or coin in STABLECOINS:
            return None
        return f"{format_crypto(gateway_limits.min_amount.normalize())} {coin}"

    def link_methods(self) -> list[str]:
        """Payment pages offered besides the coins (SMSOnline's extras, when the operator enabled them)."""
        links = self.capabilities.links
        enabled = links.link_methods if links is not None else frozenset()
        return [method for method in LINK_METHODS if method in enabled]

    def link_method(self, network: str) -> str | None:
        for method, shown in LINK_METHODS.items():
            if shown == network and method in self.link_methods():
                return method
        return None

    def offers(self, coin: str, network: str) -> bool:
        return self.matrix.has(coin, network) or (coin == LINK_COIN and self.link_method(network) is not None)

    def takes_gateway_codes(self, network: str) -> bool:
        method = self.link_method(network)
        if method is None:
            return self.gateway.accepts_coupon_codes
        links = self.capabilities.links
        return method == "page" and links is not None and links.page_accepts_coupon_codes

    async def choose_coupon(self, *, user_id: int, code: str, amount_cents: int,
                            network: str | None = None) -> CouponChoice:
        takes_codes = self.takes_gateway_codes(network) if network else self.gateway.accepts_coupon_codes
        return await choose_coupon(self.db, code=code, user_id=user_id, amount_cents=amount_cents, now=now_ts(),
                                   gateway_takes_codes=takes_codes)

    async def create_deposit(self, *, user_id: int, chat_id: int, coin: str, network: str, amount_cents: int,
                             coupon_code: str | None, creating_message: tuple[int, int] | None = None,
                             return_url: str | None = None) -> Deposit:
        """Reserve the deposit and its coupon locally, ask the gateway, then record what it gave.

        Raises AmountError, CouponError or TopupError; in every case nothing is left that looks created.
        `creating_message` (chat id, message id) is what the user sees meanwhile: if the process dies before the
        gateway answers, the reconciler edits it to say so (Reconciler.abandon_stuck_creations).
        """
        reservation = await self.reserve_deposit(user_id=user_id, chat_id=chat_id, coin=coin, network=network,
                                                 amount_cents=amount_cents, coupon_code=coupon_code,
                                                 creating_message=creating_message, return_url=return_url)
        return await self.complete_deposit(reservation)

    async def reserve_deposit(self, *, user_id: int, chat_id: int, coin: str, network: str, amount_cents: int,
                              coupon_code: str | None, creating_message: tuple[int, int] | None = None,
                              return_url: str | None = None) -> Reservation:
        """The local half of creating a deposit: checks, then the row (status 'creating') and its coupon hold.

        Fast and local, so a handler can do it while holding the user's update lock; the gateway call
        (complete_deposit) runs outside it. Raises AmountError, CouponError or TopupError.
        """
        if not self.offers(coin, network):
            raise TopupError(TopupProblem.PAIR_UNAVAILABLE)
        method = self.link_method(network) or "wallet"
        check_limits(amount_cents, self.limits_for(coin, network))
        if method != "wallet" and amount_cents % 100:
            raise AmountError(AmountProblem.WHOLE_DOLLARS)
        choice = None
        if coupon_code:
            choice = await self.choose_coupon(user_id=user_id, code=coupon_code, amount_cents=amount_cents,
                                              network=network)

        async def reserve(tx: Conn) -> int:
            # Counted with the user's row locked, then reserved in the same transaction: concurrent taps (on other
            # instances too) can't slip past the limits.
            await users.lock(tx, user_id)
            await self._check_user_limits(tx, user_id)
            deposit_id = await deposits.reserve(
                tx, user_id=user_id, chat_id=chat_id, gateway=self.gateway.name, coin=coin, network=network,
                amount_cents=amount_cents, coupon_id=choice.coupon.id if choice and choice.coupon else None,
                gateway_coupon=choice.code if choice and choice.is_gateway_code else None, method=method,
                message=creating_message)
            if choice is not None and choice.coupon is not None:
                # Rolling back removes the reservation too, so a lost race leaves nothing behind.
                if not await coupon_repo.hold(tx, choice.coupon.id, user_id, deposit_id):
                    raise CouponError(CouponProblem.ALREADY_USED)
                if not await coupon_repo.take_use(tx, choice.coupon.id):
                    raise CouponError(CouponProblem.USED_UP)
            return deposit_id

        deposit_id = await self.db.run(reserve)

        request = DepositRequest(deposit_id=deposit_id, user_id=user_id, coin=coin, network=network,
                                 amount_cents=amount_cents,
                                 coupon_code=choice.code if choice and choice.is_gateway_code else None,
                                 return_url=return_url)
        return Reservation(request, method)

    async def complete_deposit(self, reservation: Reservation) -> Deposit:
        """Ask the gateway for the reserved deposit and record its answer.

        If the user abandoned the deposit meanwhile (abandon_creation), what the gateway made is cancelled
        there where the gateway can, and TopupError(ABANDONED) is raised: it is never shown as ready.
        """
        request, method = reservation.request, reservation.method
        deposit_id, user_id = request.deposit_id, request.user_id
        try:
            created = await self._ask_gateway(request, method)
        except BaseException as exc:
            await self._creation_failed(deposit_id, exc)
            if isinstance(exc, CouponRejected):
                raise CouponError(CouponProblem.REJECTED_BY_GATEWAY) from exc
            if isinstance(exc, PairUnavailable):
                raise TopupError(TopupProblem.PAIR_UNAVAILABLE) from exc
            if isinstance(exc, AmountRejected):
                raise TopupError(TopupProblem.AMOUNT_REJECTED, minimum=exc.minimum, maximum=exc.maximum) from exc
            if isinstance(exc, GatewayError):
                raise TopupError(TopupProblem.TEMPORARILY_UNAVAILABLE) from exc
            raise

        async def record_created(tx: Conn) -> Deposit | None:
            recorded = await deposits.mark_created(
                tx, deposit_id, order_id=created.order_id, address=created.address, pay_amount=created.pay_amount,
                pay_currency=created.pay_currency, expires_at=created.expires_at, payment_url=created.payment_url,
                quoted_cents=created.quoted_cents, first_check_at=now_ts() + self._first_check_delay)
            if not recorded:
                await deposits.record_late_order(tx, deposit_id, created.order_id)
                return None
            deposit = await deposits.get(tx, deposit_id)
            assert deposit is not None
            if method == "card" and self._admin_chat_id is not None:
                # Card payments can't be followed through the API: the operator confirms them by hand.
                await notifications.queue(tx, AdminManualDeposit(deposit, await users.get(tx, user_id)),
                                          chat_id=self._admin_chat_id, user_id=user_id, deposit_id=deposit_id,
                                          dedupe_key=f"deposit:{deposit_id}:admin:manual")
            return deposit

        deposit = await self.db.run(record_created)
        if deposit is None:
            await self._cancel_late_creation(deposit_id, created.order_id)
            raise TopupError(TopupProblem.ABANDONED)
        log.info("deposit %s created at %s: order %s, %s %s/%s for %s cents", deposit_id, self.gateway.name,
                 created.order_id, created.pay_amount, request.coin, request.network, request.amount_cents)
        return deposit

    async def abandon_creation(self, user_id: int, deposit_id: int) -> bool:
        """The user cancelled while the gateway was still creating: True if the deposit was still being created
        (it is now cancelled and its coupon released); False if it is already ready, failed, or not theirs."""
        deposit = await deposits.get(self.db.reader, deposit_id) if 0 < deposit_id < 2**63 else None
        if deposit is None or deposit.user_id != user_id:
            return False
        async with self.db.transaction() as tx:
            if not await deposits.set_status(tx, deposit_id, DepositStatus.CANCELLED,
                                             only_from=(DepositStatus.CREATING,),
                                             failure_reason="cancelled by user while being created"):
                return False
            await coupon_repo.release(tx, deposit_id)
        log.info("deposit %s: abandoned by the user while the gateway was creating it", deposit_id)
        return True

    async def _cancel_late_creation(self, deposit_id: int, order_id: str) -> None:
        cancel_at_gateway = getattr(self.gateway, "cancel_deposit", None)
        log.warning("deposit %s: %s created order %s after the user cancelled; %s", deposit_id, self.gateway.name,
                    order_id, "cancelling it there" if cancel_at_gateway else "not cancellable there; never shown")
        if cancel_at_gateway is None:
            return
        try:
            await cancel_at_gateway(order_id)
        except GatewayError as exc:
            log.warning("deposit %s: could not cancel order %s at %s: %s", deposit_id, order_id, self.gateway.name,
                        exc.operator_detail)

    async def check_user_limits(self, user_id: int) -> None:
        """Raise TopupError now if this user could not create a deposit: said when Top up is tapped, not after
        every step (creating checks again, under the write lock)."""
        await self._check_user_limits(self.db.reader, user_id)

    async def _check_user_limits(self, conn: Conn, user_id: int) -> None:
        if await deposits.count_open_for_user(conn, user_id) >= self._user_limits.max_open:
            raise TopupError(TopupProblem.TOO_MANY_OPEN, limit=self._user_limits.max_open)
        if await deposits.count_started_since(conn, user_id, now_ts() - 3600) >= self._user_limits.max_per_hour:
            raise TopupError(TopupProblem.TOO_MANY_RECENT, limit=self._user_limits.max_per_hour)

    async def _ask_gateway(self, request: DepositRequest, method: str) -> CreatedDeposit:
        """The gateway's deposit, in one shape: a page link is a deposit with no address and no coin amount."""
        if method == "wallet":
            return await self.gateway.create_deposit(request)
        links = self.capabilities.links
        if links is None:  # a link method is only offered by a gateway that makes links
            raise TopupError(TopupProblem.PAIR_UNAVAILABLE)
        link = await links.create_link(request, method)
        return CreatedDeposit(order_id=link.order_id, address=None, pay_amount=None, pay_currency=LINK_COIN,
                              expires_at=link.expires_at, payment_url=link.payment_url,
                              quoted_cents=link.quoted_cents)

    async def _creation_failed(self, deposit_id: int, exc: BaseException) -> None:
        detail = exc.operator_detail if isinstance(exc, GatewayError) else type(exc).__name__
        log.warning("deposit %s: gateway %s refused or failed: %s", deposit_id, self.gateway.name, detail)
        async with self.db.transaction() as tx:
            await deposits.set_status(tx, deposit_id, DepositStatus.FAILED, only_from=(DepositStatus.CREATING,),
                                      failure_reason=f"create: {detail}"[:500])
            await coupon_repo.release(tx, deposit_id)
            if isinstance(exc, GatewayMisconfigured):
                # The user only hears "temporarily unavailable"; the operator gets the cause.
                await alert_operator(tx, admin_chat_id=self._admin_chat_id, gateway=self.gateway.name, error=exc)

    async def attach_message(self, deposit_id: int, chat_id: int, message_id: int) -> None:
        await self.db.run(lambda tx: deposits.attach_message(tx, deposit_id, chat_id, message_id))

    async def deposit_of(self, user_id: int, deposit_id: int) -> Deposit:
        """The user's own deposit; someone else's is reported exactly like a missing one."""
        if not 0 < deposit_id < 2**63:  # forged button data; SQLite can't even look it up
            raise TopupError(TopupProblem.NOT_FOUND)
        deposit = await deposits.get(self.db.reader, deposit_id)
        if deposit is None or deposit.user_id != user_id or deposit.order_id is None:
            raise TopupError(TopupProblem.NOT_FOUND)
        return deposit

    async def check_status(self, user_id: int, deposit_id: int) -> StatusCheck:
        deposit = await self.deposit_of(user_id, deposit_id)
        if deposit.status is DepositStatus.PAID:
            return StatusCheck(deposit, None)
        assert deposit.order_id is not None
        try:
            update = await self.gateway.fetch_payment(deposit.order_id)
        except GatewayError as exc:
            log.warning("deposit %s: status check failed: %s", deposit_id, exc.operator_detail)
            raise TopupError(TopupProblem.TEMPORARILY_UNAVAILABLE) from exc
        settlement = await self.settler.settle_payment(update)
        fresh = await deposits.get(self.db.reader, deposit_id)
        assert fresh is not None
        return StatusCheck(fresh, settlement)

    async def cancel(self, user_id: int, deposit_id: int, *, reason: str = "cancelled by user") -> Deposit:
        deposit = await self.deposit_of(user_id, deposit_id)
        if not await self.settler.cancel(deposit.id, reason=reason):
            raise TopupError(TopupProblem.NOT_PENDING)
        cancel_at_gateway = self.capabilities.cancel
        if cancel_at_gateway is not None and deposit.order_id is not None:
            # Where the gateway can (Smart CloudPay), funds sent after this are refused, not left unassigned.
            try:
                await cancel_at_gateway.cancel_deposit(deposit.order_id)
            except GatewayError as exc:
                log.warning("deposit %s: cancelled here but not at %s: %s", deposit.id, self.gateway.name,
                            exc.operator_detail)
        fresh = await deposits.get(self.db.reader, deposit_id)
        assert fresh is not None
        return fresh

    async def simulate_payment(self, user_id: int, deposit_id: int) -> Settlement:
        """Sandbox only: pay the deposit as asked, through the same settlement as a real gateway."""
        simulate = self.capabilities.simulate
        if not self.gateway.is_sandbox or simulate is None:
            raise TopupError(TopupProblem.NOT_SANDBOX)
        deposit = await self.deposit_of(user_id, deposit_id)
        assert deposit.order_id is not None
        return await self.settler.settle_payment(simulate.simulate_payment(deposit.order_id, deposit.amount_cents))

    def _gateway_limits(self, coin: str, network: str) -> PairLimits | None:
        refresh = self.capabilities.refresh
        return refresh.limits.get(Pair(coin, network)) if refresh is not None else None

