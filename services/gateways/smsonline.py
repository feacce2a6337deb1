"""SMSOnline V3 direct wallet: a deposit address per coin and network, confirmed by polling.

Contract: shared/reference/payment-apis.md section 1. The status response's field names are not
documented, so this client credits only on an explicit paid status and treats everything else as pending.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote


from services.gateways.base import (
    CouponRejected,
    CreatedDeposit,
    CreatedLink,
    DepositRequest,
    GatewayHealth,
    GatewayMisconfigured,
    GatewayUnavailable,
    PairUnavailable,
    ProviderCoupon,
    PaymentState,
    PaymentUpdate,
)
from services.gateways.base import AccountBalanceGateway, AccountCouponsGateway, LinkGateway
from services.gateways.http import GatewayHttp
from services.redact import register_secret
from services.gateways.spec import BuiltGateway, GatewayContext, GatewaySpec
from services.matrix import SUPPORTED_MATRIX, Pair
from services.money import decimal_to_cents, parse_decimal
from services.settings import ConfigError, Env, GatewaySettings, Secret

log = logging.getLogger(__name__)

_PAID = {"paid", "paid_over"}
_FAILED = {"fail", "system_fail"}
_CANCELLED = {"cancel"}
_REFUNDED = {"refund_process", "refund_fail", "refund_paid"}
_HELD = {"locked"}
_KNOWN_PENDING = {"check", "process", "confirm_check", "wrong_amount_waiting"}


_PAGE_PREFIX = "page:"
_CARD_PREFIX = "card:"
_CRYPTOMUS_PAGE_RE = re.compile(r"https://pay\.cryptomus\.com/pay/([0-9a-fA-F-]{8,64})/?")


def _closing_state(status: str | None) -> PaymentState | None:
    """The non-paying outcomes both status sources (transaction, payment history) share."""
    for statuses, state in ((_FAILED, PaymentState.FAILED), (_CANCELLED, PaymentState.CANCELLED),
                            (_REFUNDED, PaymentState.REFUNDED), (_HELD, PaymentState.HELD)):
        if status in statuses:
            return state
    return None


def _https_url(value: Any, *, what: str) -> str:
    if not isinstance(value, str) or not value.startswith("https://") or len(value) > 2000:
        raise GatewayUnavailable(f"SMSOnline {what}: no payment link in the answer: {str(value)[:200]!r}")
    return value


def amount_path_segment(amount_cents: int) -> str:
    """The direct-wallet path takes USD with decimals (`5.15`) [inferred in the reference, 1.5]. One place to change."""
    whole, frac = divmod(amount_cents, 100)
    return f"{whole}.{frac:02d}" if frac else str(whole)


NAME = "smsonline"
# SMSOnline names networks as we do (its table is ours: services/matrix.py SUPPORTED_MATRIX).
NETWORK_CODES: dict[str, str] = {network: network for nets in SUPPORTED_MATRIX.values() for network in nets}


class SMSOnlineGateway:
    name = NAME
    is_sandbox = False
    accepts_coupon_codes = True
    lifetime_seconds = 60 * 60  # used only if a response lacks expire_at

    def __init__(self, api_url: str, user_id: str, api_key: str, *, timeout_seconds: float = 20.0,
                 link_methods: frozenset[str] = frozenset(), v2_api_url: str | None = None) -> None:
        self._base = api_url.rstrip("/")
        self.link_methods = link_methods  # "page" and/or "card", offered next to the wallet when enabled
        self._v2_base = v2_api_url.rstrip("/") if v2_api_url else None  # set: "page" uses the V2 checkout
        # Only the V3 page invoice takes a couponCode; the V2 checkout and the card invoice don't.
        self.page_accepts_coupon_codes = self._v2_base is None
        self._user_id = user_id
        self._api_key = api_key
        register_secret(api_key)
        self._http = GatewayHttp("SMSOnline", timeout_seconds=timeout_seconds)
        self._logged_unknown: set[str] = set()
        self.health = GatewayHealth()
        self.pairs = frozenset(Pair(c, n) for c, nets in SUPPORTED_MATRIX.items() for n in nets)

    def _customer_url(self, *parts: str) -> str:
        path = "/".join(quote(p, safe="") for p in ("v3", "customers", self._user_id, *parts))
        return f"{self._base}/{path}"

    async def close(self) -> None:
        await self._http.close()

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit:
        with self.health.track():
            return await self._create(request)

    async def fetch_payment(self, order_id: str) -> PaymentUpdate:
        with self.health.track():
            if order_id.startswith(_PAGE_PREFIX):
                return await self._fetch_page(order_id)
            if order_id.startswith(_CARD_PREFIX):
                # A card payment can't be followed through the API: the operator confirms it by hand.
                return PaymentUpdate(gateway=self.name, order_id=order_id, state=PaymentState.PENDING)
            return await self._fetch(order_id)

    async def create_link(self, request: DepositRequest, method: str) -> CreatedLink:
        """A payment page for a whole-dollar amount: the V3 Cryptomus invoice (or V2 checkout), or Pay4bit."""
        if method not in self.link_methods or request.amount_cents % 100:
            raise PairUnavailable(f"SMSOnline {method} payments are not enabled or the amount is not whole dollars")
        with self.health.track():
            if method == "card":
                url = await self._v3_link("pay4bit", request, coupon=False)
                return CreatedLink(order_id=_CARD_PREFIX + hashlib.sha256(url.encode()).hexdigest()[:32],
                                   payment_url=url, expires_at=int(time.time()) + self.lifetime_seconds,
                                   quoted_cents=request.amount_cents)
            url = await (self._v2_link(request) if self._v2_base else self._v3_link("cryptomus", request, coupon=True))
            match = _CRYPTOMUS_PAGE_RE.fullmatch(url)
            if match is None:
                raise GatewayUnavailable(f"SMSOnline invoice: not a Cryptomus payment page: {url[:200]!r}")
            return CreatedLink(order_id=_PAGE_PREFIX + match.group(1), payment_url=url,
                               expires_at=int(time.time()) + self.lifetime_seconds, quoted_cents=request.amount_cents)

    async def _v3_link(self, kind: str, request: DepositRequest, *, coupon: bool) -> str:
        # Declared an integer with no unit; read as whole dollars like the direct wallet [inferred, reference 1.5].
        url = self._customer_url(kind, "invoice", str(request.amount_cents // 100))
        payload = {"apiKey": self._api_key}
        if coupon and request.coupon_code:
            payload["couponCode"] = request.coupon_code
        status, body = await self._call("PUT", url, json_body=payload, what=f"{kind} invoice")
        if status == 500 and coupon and request.coupon_code:
            raise CouponRejected(f"SMSOnline refused coupon: {_describe(body)}")
        return _https_url(self._unwrap(status, body, what=f"{kind} invoice"), what=f"{kind} invoice")

    async def _v2_link(self, request: DepositRequest) -> str:
        # V2 takes USD cents [documented]; its envelope is {"error": false, "body": ...}.
        params = {"userId": self._user_id, "key": self._api_key, "amount": str(request.amount_cents)}
        status, body = await self._call("GET", f"{self._v2_base}/cs/checkout/crypto", params=params,
                                        what="V2 checkout")
        if status == 401:
            raise GatewayMisconfigured(f"SMSOnline V2 checkout: unauthorized (check SMSONLINE_USER_ID and "
                                       f"SMSONLINE_API_KEY): {_describe(body)}")
        if not 200 <= status < 300 or not isinstance(body, dict) or body.get("error") is not False:
            raise GatewayUnavailable(f"SMSOnline V2 checkout: HTTP {status}: {_describe(body)}")
        return _https_url(body.get("body"), what="V2 checkout")

    async def _fetch_page(self, order_id: str) -> PaymentUpdate:
        """Follow a page payment in the account's history: only an exact payId match with a paid status counts."""
        pay_id = order_id[len(_PAGE_PREFIX):]
        status, body = await self._call("GET", self._customer_url("payments"), params={"apiKey": self._api_key},
                                        what="payments")
        history = self._unwrap(status, body, what="payments")
        entries = [e for e in history if isinstance(e, dict) and e.get("payId") == pay_id] \
            if isinstance(history, list) else []
        if not entries:
            return PaymentUpdate(gateway=self.name, order_id=order_id, state=PaymentState.PENDING)
        entry = entries[-1]
        raw = entry.get("status")
        status_text = raw.strip().lower() if isinstance(raw, str) else None
        state = PaymentState.PAID if status_text in _PAID else _closing_state(status_text) or PaymentState.PENDING
        # Credited what the history says arrived (USD cents [inferred, reference 1.5]); settlement never credits more
        # than the deposit's own amount for it. Without a readable amount a person decides.
        amount = entry.get("amount")
        paid_cents = amount if isinstance(amount, int) and not isinstance(amount, bool) and amount > 0 else None
        note = None
        if state is PaymentState.PAID and paid_cents is None:
            state, note = PaymentState.HELD, f"page paid, but the history shows no usable amount ({str(amount)[:40]!r})"
        return PaymentUpdate(gateway=self.name, order_id=order_id, state=state, raw_status=status_text, raw=entry,
                             paid_cents=paid_cents, note=note)

    async def _create(self, request: DepositRequest) -> CreatedDeposit:
        url = self._customer_url("cryptomus", "direct", request.coin.upper(), request.network.upper(),
                                 amount_path_segment(request.amount_cents))
        payload: dict[str, str] = {"apiKey": self._api_key}
        if request.coupon_code:
            payload["couponCode"] = request.coupon_code
        status, body = await self._call("PUT", url, json_body=payload, what="direct wallet")
        if status == 400:
            raise PairUnavailable(f"SMSOnline refused {request.coin}/{request.network}: {_describe(body)}")
        if status == 500 and request.coupon_code:
            raise CouponRejected(f"SMSOnline refused coupon: {_describe(body)}")
        result = self._unwrap(status, body, what="direct wallet")
        return self._parse_deposit(result, request)

    async def _fetch(self, order_id: str) -> PaymentUpdate:
        url = self._customer_url("cryptomus", "transaction", order_id)
        status, body = await self._call("GET", url, params={"apiKey": self._api_key}, what="transaction status")
        result = self._unwrap(status, body, what="transaction status")
        return self._parse_status(order_id, result)

    async def account_balance(self) -> dict[str, Any]:
        with self.health.track():
            url = self._customer_url("balance")
            status, body = await self._call("GET", url, params={"apiKey": self._api_key}, what="balance")
            result = self._unwrap(status, body, what="balance")
        return result if isinstance(result, dict) else {}

    async def account_coupons(self) -> list[ProviderCoupon]:
        """The coupons SMSOnline holds for this account (GET …/coupons, reference 1.2 "Get coupons"). A customer who
        types one is passed through as couponCode; SMSOnline decides what it gives."""
        with self.health.track():
            url = self._customer_url("coupons")
            status, body = await self._call("GET", url, params={"apiKey": self._api_key}, what="coupons")
            result = self._unwrap(status, body, what="coupons")
        codes = result.get("codes") if isinstance(result, dict) else None
        if not isinstance(codes, list):
            raise GatewayUnavailable(f"SMSOnline coupons: no list of codes in {_describe(body)}")

        def text(entry: dict[str, Any], key: str) -> str | None:
            value = entry.get(key)
            return str(value)[:40] if isinstance(value, str | int) and not isinstance(value, bool) else None

        return [ProviderCoupon(code=entry["code"][:40], percentage=text(entry, "percentage"),
                               status=text(entry, "status"), target=text(entry, "targetPay"),
                               expires=text(entry, "expiredAt"))
                for entry in codes if isinstance(entry, dict) and isinstance(entry.get("code"), str) and entry["code"]]

    async def _call(self, method: str, url: str, *, what: str, json_body: dict[str, Any] | None = None,
                    params: dict[str, str] | None = None) -> tuple[int, Any]:
        answer = await self._http.request(method, url, what=what, json=json_body, params=params)
        return answer.status, answer.json if answer.json is not None else answer.text

    def _unwrap(self, status: int, body: Any, *, what: str) -> Any:
        if status == 401:
            raise GatewayMisconfigured(f"SMSOnline {what}: user verification failed (check SMSONLINE_USER_ID and "
                                       f"SMSONLINE_API_KEY): {_describe(body)}")
        if status >= 500 or status == 429:
            raise GatewayUnavailable(f"SMSOnline {what}: HTTP {status}: {_describe(body)}")
        if not 200 <= status < 300:
            raise GatewayUnavailable(f"SMSOnline {what}: unexpected HTTP {status}: {_describe(body)}")
        if not isinstance(body, dict) or body.get("ok") is not True or "body" not in body:
            raise GatewayUnavailable(f"SMSOnline {what}: unreadable answer: {_describe(body)}")
        return body["body"]

    def _parse_deposit(self, result: Any, request: DepositRequest) -> CreatedDeposit:
        if not isinstance(result, dict):
            raise GatewayUnavailable(f"SMSOnline direct wallet: body is not an object: {_describe(result)}")
        address = result.get("to_address")
        order_id = result.get("order_id")
        pay_amount = parse_decimal(result.get("amountInCrypto"))
        if not (isinstance(address, str) and address.strip() and isinstance(order_id, str) and order_id.strip()
                and pay_amount is not None and pay_amount > 0):
            # Never show an address we can't tie to an order and an exact amount.
            raise GatewayUnavailable(f"SMSOnline direct wallet: incomplete deposit: {_describe(result)}")
        expire_at = result.get("expire_at")
        if isinstance(expire_at, bool) or not isinstance(expire_at, int) or expire_at <= 0:
            expire_at = int(time.time()) + self.lifetime_seconds
        url = result.get("url")
        quoted = parse_decimal(result.get("amountInUSD"))
        return CreatedDeposit(
            order_id=order_id.strip(),
            address=address.strip(),
            pay_amount=pay_amount,
            pay_currency=str(result.get("currency") or request.coin).upper(),
            expires_at=expire_at,
            payment_url=url if isinstance(url, str) and url.startswith("https://") else None,
            quoted_cents=decimal_to_cents(quoted) if quoted is not None and quoted > 0 else None,
        )

    def _parse_status(self, order_id: str, result: Any) -> PaymentUpdate:
        if not isinstance(result, dict):
            raise GatewayUnavailable(f"SMSOnline transaction status: body is not an object: {_describe(result)}")
        raw_status = result.get("status", result.get("payment_status"))
        status = raw_status.strip().lower() if isinstance(raw_status, str) else None
        is_final = result.get("is_final")
        raw_paid = result.get("payment_amount_usd")
        paid_usd = parse_decimal(raw_paid)
        paid_cents = decimal_to_cents(paid_usd) if paid_usd is not None else None
        # An amount that is there but unreadable means something is off: a person looks before any credit.
        unreadable = f"unreadable paid amount {str(raw_paid)[:40]!r}" if raw_paid is not None and paid_usd is None \
            else None
        txid = result.get("txid") if isinstance(result.get("txid"), str) else None

        if status in (*_PAID, "wrong_amount") and is_final is not False and unreadable:
            state = PaymentState.HELD
        elif status in _PAID and is_final is not False:
            state = PaymentState.PAID
        elif status == "wrong_amount" and is_final is not False:
            # Only credit an underpayment when the gateway tells us what arrived; otherwise hold for review.
            state = PaymentState.UNDERPAID if paid_cents else PaymentState.HELD
        elif (closing := _closing_state(status)) is not None:
            state = closing
        else:
            state = PaymentState.PENDING
            if status not in _KNOWN_PENDING and str(status) not in self._logged_unknown:
                self._logged_unknown.add(str(status))
                log.warning("smsonline: unrecognised transaction status %r, treated as pending; body: %s",
                            raw_status, json.dumps(result)[:2000])
        currency = result.get("currency")
        # The answer repeats the deposit's own figures [reference 1.5]: settlement checks them against the deposit.
        invoice_usd = parse_decimal(result.get("amountInUSD"))
        return PaymentUpdate(gateway=self.name, order_id=order_id, state=state, paid_cents=paid_cents, txid=txid,
                             raw_status=status, source="poll", raw=result, note=unreadable,
                             currency=currency if isinstance(currency, str) and currency else None,
                             invoice_usd_cents=None if invoice_usd is None else decimal_to_cents(invoice_usd),
                             due_amount=parse_decimal(result.get("amountInCrypto")),
                             received_amount=parse_decimal(result.get("payment_amount")),
                             # Its statuses are Cryptomus' (reference 1.5): the same "seen, confirming" one.
                             seen=state is PaymentState.PENDING and status == "confirm_check")


def _describe(body: Any) -> str:
    """A short, log-safe description of an error body: the message fields the reference suggests, else the raw text."""
    if isinstance(body, dict):
        for key in ("errorMessage", "message", "error"):
            value = body.get(key)
            if isinstance(value, str):
                return value[:300]
    return repr(body)[:300]


@dataclass(frozen=True)
class SMSOnlineSettings(GatewaySettings):
    """SMSONLINE_API_URL, SMSONLINE_USER_ID, SMSONLINE_API_KEY, SMSONLINE_EXTRA_METHODS, SMSONLINE_V2(_API_URL)."""

    api_url: str
    user_id: str
    api_key: Secret
    extra_methods: frozenset[str] = frozenset()  # payment pages offered besides the wallet: page, card
    v2: bool = False  # the page through the V2 checkout instead of the V3 invoice
    v2_api_url: str = "https://api.smsonline.cloud"

    @classmethod
    def from_env(cls, env: Env) -> SMSOnlineSettings:
        hint = "copy it from your SMSOnline account's API settings"
        user = env.required("SMSONLINE_USER_ID", gateway=NAME, hint=hint)
        key = env.required("SMSONLINE_API_KEY", gateway=NAME, hint=hint)
        extra = frozenset(m.strip().lower() for m in env.get("SMSONLINE_EXTRA_METHODS").split(",") if m.strip())
        unknown = sorted(extra - {"page", "card"})
        if unknown:
            raise ConfigError(f"SMSONLINE_EXTRA_METHODS: unknown {', '.join(unknown)}; use page, card or both "
                              "(page: any coin on the Cryptomus payment page; card: Pay4bit)")
        return cls(api_url=env.http_url("SMSONLINE_API_URL", "https://api-x.smsonline.cloud"), user_id=user,
                   api_key=Secret(key), extra_methods=extra, v2=env.bool("SMSONLINE_V2"),
                   v2_api_url=env.http_url("SMSONLINE_V2_API_URL", "https://api.smsonline.cloud"))


async def _build(settings: SMSOnlineSettings, context: GatewayContext) -> BuiltGateway:
    return BuiltGateway(SMSOnlineGateway(settings.api_url, settings.user_id, settings.api_key.value,
                                         link_methods=settings.extra_methods,
                                         v2_api_url=settings.v2_api_url if settings.v2 else None))


SPEC = GatewaySpec(name=NAME, title="SMSOnline", settings=SMSOnlineSettings.from_env, build=_build,
                   network_codes=NETWORK_CODES,
                   capabilities=(LinkGateway, AccountBalanceGateway, AccountCouponsGateway))
