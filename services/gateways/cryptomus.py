"""Cryptomus merchant API: signed invoices in USD paid in a coin, confirmed by signed webhooks and polling.

Contract: shared/reference/payment-apis.md section 2. Requests are serialised once, signed, and those
exact bytes are sent; webhooks are verified the PHP way (slashes escaped), in constant time.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Self

from services.gateways.base import (
    AmountRejected,
    CreatedDeposit,
    DepositRequest,
    GatewayHealth,
    GatewayMisconfigured,
    GatewayUnavailable,
    PairLimits,
    PairUnavailable,
    PaymentState,
    PaymentUpdate,
    WebhookReading,
    WebhookVerdict,
)
from services.gateways.base import RefreshingGateway, WalletBalanceGateway, WebhookGateway
from services.gateways.http import GatewayHttp
from services.redact import register_secret
from services.gateways.spec import BuiltGateway, GatewayContext, GatewaySpec
from services.matrix import Pair, all_pairs, network_from_code
from services.money import cents_to_decimal, decimal_to_cents, parse_decimal
from services.settings import Env, GatewaySettings, Secret
from services.webhooks import CallbackPolicy, IPNetwork

log = logging.getLogger(__name__)

NAME = "cryptomus"
# Cryptomus' network codes for our networks (shared/reference/payment-apis.md section 4).
NETWORK_CODES: dict[str, str] = {
    "TRON": "tron", "BSC": "bsc", "ETH": "eth", "POLYGON": "polygon", "ARBITRUM": "arbitrum",
    "AVALANCHE": "avalanche", "SOL": "sol", "TON": "ton", "BTC": "btc", "LTC": "ltc", "XMR": "xmr",
    "DASH": "dash", "DOGE": "doge", "BCH": "bch",
}
_PAID = {"paid", "paid_over"}
_FAILED = {"fail", "system_fail"}
_REFUNDED = {"refund_process", "refund_fail", "refund_paid"}
# "Transaction seen, waiting for confirmations" (reference 2.7). `check` is not: it still waits for the transaction
# to appear on chain, so the card would promise too much.
SEEN_STATUS = "confirm_check"
_KNOWN_PENDING = {"check", "process", "confirm_check", "wrong_amount_waiting"}
_LIMIT_RE = re.compile(r"(Minimum|Maximum) amount ([0-9.]+ ?[A-Za-z0-9]*)", re.IGNORECASE)
_PAIR_ERRORS = ("network was not found", "currency was not found", "not found service")
_OPERATOR_ERRORS = ("you are forbidden", "wallet not found")


def php_json(data: Any) -> str:
    """The bytes PHP's json_encode($data, JSON_UNESCAPED_UNICODE) gives: compact, raw UTF-8, `/` escaped."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


def sign(payload: str | bytes, key: str) -> str:
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    return hashlib.md5(base64.b64encode(raw) + key.encode("utf-8")).hexdigest()  # noqa: S324 - their scheme


def verify_webhook(body: bytes, payment_key: str) -> dict[str, Any] | None:
    """The webhook's data if its `sign` matches (reference 2.9); None for anything else."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    received = data.pop("sign", None)
    if not isinstance(received, str) or data.get("type") not in ("payment", "wallet"):
        return None
    try:
        expected = sign(php_json(data), payment_key)
    except (RecursionError, ValueError):  # nested deeper than we can re-encode: not something Cryptomus sends
        return None
    # As bytes: compare_digest refuses non-ASCII str, and a sender must not be able to make that raise.
    return data if hmac.compare_digest(expected.encode(), received.lower().encode("utf-8", "replace")) else None


class CryptomusGateway:
    """Cryptomus, and (subclassed with its own name) any gateway that speaks its protocol, like Heleket."""

    name = NAME
    title = "Cryptomus"
    env_prefix = "CRYPTOMUS"  # names the variables to check in an error message
    is_sandbox = False
    accepts_coupon_codes = False
    lifetime_seconds = 60 * 60

    def __init__(self, api_url: str, merchant_id: str, payment_key: str, *, callback_url: str | None,
                 timeout_seconds: float = 20.0) -> None:
        self._base = api_url.rstrip("/")
        self._merchant = merchant_id
        self._key = payment_key
        register_secret(payment_key)
        self._callback_url = callback_url
        self._http = GatewayHttp(self.title, timeout_seconds=timeout_seconds)
        self._logged_unknown: set[str] = set()
        self.health = GatewayHealth()
        # Until the services list answers, offer what Cryptomus can name; refresh_pairs narrows it.
        self.pairs = frozenset(p for p in all_pairs() if p.network in NETWORK_CODES)
        self.limits: dict[Pair, PairLimits] = {}

    async def close(self) -> None:
        await self._http.close()

    # --- requests ---

    async def _post(self, path: str, data: dict[str, Any] | None, *, what: str) -> Any:
        body = php_json(data) if data else ""
        headers = {"merchant": self._merchant, "sign": sign(body, self._key),
                   "Content-Type": "application/json;charset=UTF-8", "Accept": "application/json"}
        answer = await self._http.request("POST", f"{self._base}{path}", what=what, data=body.encode("utf-8"),
                                          headers=headers)
        return self._unwrap(answer.status, answer.json, answer.text, what=what)

    def _unwrap(self, status: int, answer: Any, text: str, *, what: str) -> Any:
        message = _message(answer)
        lowered = message.lower()
        if status in (401, 403) or any(e in lowered for e in _OPERATOR_ERRORS):
            raise GatewayMisconfigured(f"{self.title} {what}: refused (check {self.env_prefix}_MERCHANT_ID and "
                                       f"{self.env_prefix}_API_KEY): HTTP {status} {message or text[:200]}")
        if any(e in lowered for e in _PAIR_ERRORS):
            raise PairUnavailable(f"{self.title} {what}: {message}")
        limit = _LIMIT_RE.search(message)
        if limit:
            bound = limit.group(2).strip()
            is_min = limit.group(1).lower() == "minimum"
            raise AmountRejected(f"{self.title} {what}: {message}", minimum=bound if is_min else None,
                                 maximum=None if is_min else bound)
        if status >= 500 or status == 429:
            raise GatewayUnavailable(f"{self.title} {what}: HTTP {status}: {message or text[:200]}")
        if not isinstance(answer, dict) or answer.get("state") != 0 or "result" not in answer:
            # 422 validation errors are our bug: the operator sees the detail through the logs.
            raise GatewayUnavailable(f"{self.title} {what}: HTTP {status}: {message or text[:200]}")
        return answer["result"]

    # --- the gateway protocol ---

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit:
        with self.health.track():
            return await self._create(request)

    async def fetch_payment(self, order_id: str) -> PaymentUpdate:
        with self.health.track():
            result = await self._post("/v1/payment/info", {"order_id": order_id}, what="payment info")
            if not isinstance(result, dict):
                raise GatewayUnavailable(f"{self.title} payment info: result is not an object: {result!r}"[:300])
        return self._update(order_id, result, source="poll")

    async def refresh_pairs(self) -> frozenset[Pair]:
        with self.health.track():
            return await self._refresh_pairs()

    async def balance(self) -> list[tuple[str, str, Decimal, Decimal | None]]:
        """The account's balances (POST /v1/balance, reference 2.12): (wallet, currency, amount, USD value or None),
        wallet being "merchant" or "user" (the personal wallet), in the order Cryptomus lists them."""
        with self.health.track():
            result = await self._post("/v1/balance", None, what="balance")
            entries = result if isinstance(result, list) else [result]
            found: list[tuple[str, str, Decimal, Decimal | None]] = []
            readable = False
            for entry in entries:
                wallets = entry.get("balance") if isinstance(entry, dict) else None
                if not isinstance(wallets, dict):
                    continue
                readable = True
                for wallet in ("merchant", "user"):
                    for item in wallets.get(wallet) or []:
                        if not isinstance(item, dict) or not isinstance(item.get("currency_code"), str):
                            continue
                        amount = parse_decimal(item.get("balance"))
                        if amount is not None:
                            found.append((wallet, item["currency_code"][:16], amount,
                                          parse_decimal(item.get("balance_usd"))))
            if not readable:
                raise GatewayUnavailable(f"{self.title} balance: no balances in {json.dumps(result)[:200]}")
        return found

    async def _create(self, request: DepositRequest) -> CreatedDeposit:
        # A new order id per attempt (reusing one returns the old invoice); at most 32 characters.
        order_id = f"d{request.deposit_id}-{secrets.token_hex(6)}"
        data: dict[str, Any] = {
            "amount": str(cents_to_decimal(request.amount_cents)),
            "currency": "USD",
            "order_id": order_id,
            "to_currency": request.coin,
            "network": NETWORK_CODES[request.network],
            "lifetime": self.lifetime_seconds,
        }
        if self._callback_url:
            data["url_callback"] = self._callback_url
        if request.return_url:
            # The payment page's "back" and "done" buttons lead to the bot, not to a dead end.
            data["url_return"] = data["url_success"] = request.return_url
        result = await self._post("/v1/payment", data, what="create invoice")
        return self._parse_invoice(result, order_id, request)

    def _parse_invoice(self, result: Any, order_id: str, request: DepositRequest) -> CreatedDeposit:
        if not isinstance(result, dict):
            raise GatewayUnavailable(f"{self.title} create invoice: result is not an object: {result!r}"[:300])
        address = result.get("address")
        pay_amount = parse_decimal(result.get("payer_amount"))
        expires = result.get("expired_at")
        if not (isinstance(address, str) and address.strip() and pay_amount is not None and pay_amount > 0):
            raise GatewayUnavailable(f"{self.title} create invoice: no address or amount: {json.dumps(result)[:300]}")
        if result.get("order_id") not in (None, order_id):
            raise GatewayUnavailable(f"{self.title} create invoice: answered for another order "
                                     f"{result.get('order_id')!r}")
        url = result.get("url")
        return CreatedDeposit(
            order_id=order_id,
            address=address.strip(),
            pay_amount=pay_amount,
            pay_currency=str(result.get("payer_currency") or request.coin).upper(),
            expires_at=expires if isinstance(expires, int) and not isinstance(expires, bool) and expires > 0
            else int(time.time()) + self.lifetime_seconds,
            payment_url=url if isinstance(url, str) and url.startswith("https://") else None,
            quoted_cents=request.amount_cents,
        )

    def read_webhook(self, body: bytes) -> WebhookReading:
        data = verify_webhook(body, self._key)
        if data is None:
            if _json_object(body) is None:
                return WebhookReading(WebhookVerdict.BAD_REQUEST, detail="body is not a JSON object")
            return WebhookReading(WebhookVerdict.BAD_SIGNATURE, detail="sign missing or wrong")
        if data.get("type") != "payment":
            return WebhookReading(WebhookVerdict.IGNORED, detail=f"type {data.get('type')!r}")
        order_id = data.get("order_id")
        if not isinstance(order_id, str) or not order_id:
            return WebhookReading(WebhookVerdict.BAD_REQUEST, detail="order_id missing")
        return WebhookReading(WebhookVerdict.SETTLE, update=self._update(order_id, data, source="webhook"),
                              order_id=order_id)

    def _update(self, order_id: str, data: dict[str, Any], *, source: str) -> PaymentUpdate:
        """Map a payment object (info answer or webhook) to what settlement acts on (reference 2.7)."""
        raw = data.get("status", data.get("payment_status"))
        status = raw.strip().lower() if isinstance(raw, str) else None
        final = data.get("is_final") is True
        paid_cents, unreadable = _paid_usd_cents(data)
        txid = data.get("txid") if isinstance(data.get("txid"), str) else None
        if status in (*_PAID, "wrong_amount") and final and unreadable:
            state = PaymentState.HELD  # a signed answer with nonsense figures: a person looks before any credit
        elif status in _PAID and final:
            state = PaymentState.PAID
        elif status == "wrong_amount" and final:
            # Credited for what was received when Cryptomus says how much; otherwise a person decides.
            state = PaymentState.UNDERPAID if paid_cents else PaymentState.HELD
        elif status == "cancel":
            state = PaymentState.CANCELLED
        elif status in _FAILED:
            state = PaymentState.FAILED
        elif status in _REFUNDED:
            state = PaymentState.REFUNDED
        elif status == "locked":
            state = PaymentState.HELD
        else:
            state = PaymentState.PENDING
            if status not in _KNOWN_PENDING and status not in _PAID and str(status) not in self._logged_unknown:
                self._logged_unknown.add(str(status))
                log.warning("%s: unrecognised status %r (is_final %r), treated as pending: %s", self.name, raw,
                            data.get("is_final"), json.dumps(data)[:2000])
        invoice_amount = parse_decimal(data.get("amount"))
        invoice_currency = data.get("currency")
        if state in (PaymentState.PAID, PaymentState.UNDERPAID) and (
                invoice_amount is None or not isinstance(invoice_currency, str) or not invoice_currency):
            # Nothing to cross-check the payment against (settlement.judge_credit): a person looks first.
            state, unreadable = PaymentState.HELD, unreadable or "paid, but the invoice's amount or currency is missing"
        payer_currency = data.get("payer_currency")
        return PaymentUpdate(gateway=self.name, order_id=order_id, state=state, paid_cents=paid_cents, txid=txid,
                             raw_status=status, source=source, raw=data, note=unreadable,
                             currency=payer_currency if isinstance(payer_currency, str) and payer_currency else None,
                             invoice_usd_cents=None if invoice_amount is None else decimal_to_cents(invoice_amount),
                             invoice_currency=invoice_currency if isinstance(invoice_currency, str) else None,
                             due_amount=parse_decimal(data.get("payer_amount")),
                             received_amount=parse_decimal(data.get("payment_amount")),
                             seen=state is PaymentState.PENDING and status == SEEN_STATUS)

    async def _refresh_pairs(self) -> frozenset[Pair]:
        """Ask which pairs are available now and their limits (reference 2.5); keeps the old list on failure."""
        result = await self._post("/v1/payment/services", None, what="services")
        if not isinstance(result, list):
            raise GatewayUnavailable(f"{self.title} services: result is not a list: {result!r}"[:300])
        pairs: set[Pair] = set()
        limits: dict[Pair, PairLimits] = {}
        for service in result:
            if not isinstance(service, dict) or service.get("is_available") is not True:
                continue
            coin, code = service.get("currency"), service.get("network")
            if not isinstance(coin, str) or not isinstance(code, str):
                continue
            network = network_from_code(NETWORK_CODES, code)
            if network is None:
                continue
            pair = Pair(coin.upper(), network)
            pairs.add(pair)
            raw_limit = service.get("limit")
            limit = raw_limit if isinstance(raw_limit, dict) else {}
            limits[pair] = PairLimits(parse_decimal(limit.get("min_amount")), parse_decimal(limit.get("max_amount")))
        self.pairs = frozenset(pairs)
        self.limits = limits
        return self.pairs


def _paid_usd_cents(data: dict[str, Any]) -> tuple[int | None, str | None]:
    """USD actually paid, computed the same way from a webhook and from payment/info (reference 2.7: consistently),
    and a note when a figure that is present can't be read.

    Our invoices are in USD: the USD amount scaled by paid/due in the coin, at the invoice's own rate. Only
    when the coin amounts are missing does `payment_amount_usd` (webhooks only) stand in.
    """
    unreadable = [f"{key} {str(data[key])[:40]!r}" for key in ("amount", "payment_amount", "payer_amount",
                                                                "payment_amount_usd")
                  if data.get(key) is not None and parse_decimal(data[key]) is None]
    note = f"unreadable {', '.join(unreadable)}" if unreadable else None
    amount = parse_decimal(data.get("amount"))
    paid = parse_decimal(data.get("payment_amount"))
    due = parse_decimal(data.get("payer_amount"))
    if str(data.get("currency", "")).upper() == "USD" and amount and paid is not None and due:
        return decimal_to_cents(amount * paid / due), note
    usd = parse_decimal(data.get("payment_amount_usd"))
    return (decimal_to_cents(usd) if usd is not None else None), note


def _message(answer: Any) -> str:
    if not isinstance(answer, dict):
        return ""
    message = answer.get("message")
    if isinstance(message, str):
        return message[:300]
    errors = answer.get("errors")
    if isinstance(errors, dict):
        return "; ".join(f"{field}: {', '.join(map(str, msgs)) if isinstance(msgs, list) else msgs}"
                         for field, msgs in errors.items())[:300]
    return ""


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


@dataclass(frozen=True)
class CryptomusSettings(GatewaySettings):
    """CRYPTOMUS_API_URL, CRYPTOMUS_MERCHANT_ID, CRYPTOMUS_API_KEY, CRYPTOMUS_WEBHOOK_IPS; a gateway on the same
    protocol subclasses it with its own name, title, prefix and default URL."""

    gateway: ClassVar[str] = NAME
    title: ClassVar[str] = "Cryptomus"
    prefix: ClassVar[str] = "CRYPTOMUS"
    default_api_url: ClassVar[str] = "https://api.cryptomus.com"

    api_url: str
    merchant_id: str
    api_key: Secret
    webhook_ips: frozenset[IPNetwork] | None  # None: callbacks from anywhere, the signature decides

    @classmethod
    def from_env(cls, env: Env) -> Self:
        p = cls.prefix
        merchant = env.required(f"{p}_MERCHANT_ID", gateway=cls.gateway,
                                hint=f"set it to the merchant UUID from your {cls.title} merchant settings")
        key = env.required(f"{p}_API_KEY", gateway=cls.gateway, hint="set it to the merchant's payment API key")
        return cls(api_url=env.http_url(f"{p}_API_URL", cls.default_api_url), merchant_id=merchant,
                   api_key=Secret(key), webhook_ips=env.networks(f"{p}_WEBHOOK_IPS") or None)


def builder(gateway_class: type[CryptomusGateway]) -> Callable[[CryptomusSettings, GatewayContext],
                                                               Awaitable[BuiltGateway]]:
    """The factory for a gateway on Cryptomus' protocol: its callbacks come to /webhooks/<its name>."""

    async def build(settings: CryptomusSettings, context: GatewayContext) -> BuiltGateway:
        public = context.public_url
        if public is None:
            log.warning("PUBLIC_URL is not set: %s can't call back, payments are confirmed by polling only",
                        gateway_class.title)
        gateway = gateway_class(settings.api_url, settings.merchant_id, settings.api_key.value,
                                callback_url=f"{public}/webhooks/{gateway_class.name}" if public else None)
        return BuiltGateway(gateway, CallbackPolicy(allowed_sources=settings.webhook_ips))

    return build


CAPABILITIES = (WebhookGateway, RefreshingGateway, WalletBalanceGateway)
SPEC = GatewaySpec(name=NAME, title="Cryptomus", settings=CryptomusSettings.from_env, build=builder(CryptomusGateway),
                   network_codes=NETWORK_CODES, capabilities=CAPABILITIES)
