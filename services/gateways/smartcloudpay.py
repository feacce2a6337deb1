"""Smart CloudPay invoices: created with a USD total, confirmed only by reading the invoice back from the API.

Contract: shared/reference/payment-apis.md section 3. Its webhooks carry no signature, so a webhook is
only a hint to ask the API; the response shapes are undocumented, so every field is looked for in the
places the reference suggests and an invoice without an address is never shown.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import re
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from services.gateways.base import (
    CreatedDeposit,
    DepositRequest,
    GatewayHealth,
    GatewayMisconfigured,
    GatewayPayout,
    GatewayUnavailable,
    PairUnavailable,
    PaymentState,
    PaymentUpdate,
    WebhookReading,
    WebhookVerdict,
)
from services.gateways.base import OutgoingIPGateway, PayoutGateway, PayoutHistoryGateway, PrepaidGateway
from services.gateways.base import CancellableGateway, WebhookGateway
from services.gateways.http import GatewayHttp
from services.redact import register_secret
from services.gateways.spec import BuiltGateway, GatewayContext, GatewaySpec
from services.matrix import ConfigPairError, Pair, parse_pair_filter
from services.money import cents_to_decimal, decimal_to_cents, parse_decimal
from services.settings import ConfigError, Env, GatewaySettings, Secret
from services.store.settings import get_or_create_secret
from services.webhooks import CallbackPolicy

log = logging.getLogger(__name__)

NAME = "smartcloudpay"
# Smart CloudPay's network codes for ours: "evm" is its Ethereum chain.
NETWORK_CODES: dict[str, str] = {"BSC": "bsc", "TRON": "tron", "ETH": "evm"}
DEFAULT_PAIRS = frozenset({Pair("USDT", "BSC"), Pair("USDT", "TRON"), Pair("BNB", "BSC")})
_CANCELLED = {"cancelled", "canceled", "cancel", "expired"}
_FAILED = {"failed", "fail"}


class SmartCloudPayGateway:
    name = NAME
    is_sandbox = False
    accepts_coupon_codes = False
    lifetime_seconds = 60 * 60  # the invoice lifetime is undocumented: our own deadline

    def __init__(self, api_url: str, api_key: str, merchant_id: str, *, notification_email: str,
                 callback_url: str | None, pairs: frozenset[Pair] = DEFAULT_PAIRS, origin: str | None = None,
                 timeout_seconds: float = 20.0) -> None:
        self._base = api_url.rstrip("/")
        self._headers = {"x-api-key": api_key, "merchant-id": merchant_id, "Content-Type": "application/json"}
        if origin:
            self._headers["Origin"] = origin
        self._email = notification_email
        self._callback_url = callback_url
        # The key, and the callback token our URL carries: invoice answers echo that URL.
        register_secret(api_key, *parse_qs(urlsplit(callback_url or "").query).get("token", []))
        self._http = GatewayHttp("Smart CloudPay", timeout_seconds=timeout_seconds)
        self._logged_unknown: set[str] = set()
        self.pairs = pairs
        self.health = GatewayHealth()

    async def close(self) -> None:
        await self._http.close()

    async def _request(self, method: str, path: str, *, what: str, body: bytes | None = None) -> Any:
        answer = await self._http.request(method, f"{self._base}{path}", what=what, data=body, headers=self._headers)
        return self._unwrap(answer.status, answer.json, answer.text, what=what)

    @staticmethod
    def _unwrap(status: int, answer: Any, text: str, *, what: str) -> dict[str, Any]:
        detail = _message(answer) or text[:200]
        if status in (401, 403):
            raise GatewayMisconfigured(f"Smart CloudPay {what}: refused (check SMARTCLOUDPAY_API_KEY, "
                                       f"SMARTCLOUDPAY_MERCHANT_ID and the allowed server IP): HTTP {status} {detail}")
        if status >= 500 or status == 429:
            raise GatewayUnavailable(f"Smart CloudPay {what}: HTTP {status}: {detail}")
        if not isinstance(answer, dict):
            raise GatewayUnavailable(f"Smart CloudPay {what}: unreadable answer (HTTP {status}): {text[:200]}")
        if not 200 <= status < 300 or answer.get("success") is False:
            raise PairUnavailable(f"Smart CloudPay {what}: HTTP {status}: {detail}") if what == "create invoice" \
                else GatewayUnavailable(f"Smart CloudPay {what}: HTTP {status}: {detail}")
        data = answer.get("data")
        return data if isinstance(data, dict) else answer  # the envelope is undocumented: accept both

    async def create_deposit(self, request: DepositRequest) -> CreatedDeposit:
        with self.health.track():
            return await self._create(request)

    async def fetch_payment(self, order_id: str) -> PaymentUpdate:
        with self.health.track():
            return await self._fetch(order_id)

    async def cancel_deposit(self, order_id: str) -> None:
        """Cancel at the gateway so funds sent later are refused instead of left unassigned."""
        with self.health.track():
            await self._request("POST", f"/payment/invoice/cancel/{quote(order_id, safe='')}", what="cancel invoice")

    async def _create(self, request: DepositRequest) -> CreatedDeposit:
        usd = cents_to_decimal(request.amount_cents)
        payload = {
            "totalusd": "__TOTALUSD__",
            "currency": request.coin,
            "network": NETWORK_CODES[request.network],
            "customer_name": f"telegram-{request.user_id}",
            "notification_emails": self._email,
        }
        if self._callback_url:
            payload["callback_url"] = self._callback_url
        # Amounts are JSON numbers: written from the Decimal's digits, never through float.
        body = json.dumps(payload).replace('"__TOTALUSD__"', format(usd, "f")).encode()
        invoice = await self._request("POST", "/payment/invoice/create", what="create invoice", body=body)
        invoice_id = _first_str(invoice, "invoice_id", "id", "invoiceno")
        address = _first_str(invoice, "address", "to_address", "wallet_address")
        pay_amount = parse_decimal(_first(invoice, "amount", "crypto_amount"))
        if invoice_id is None or address is None or pay_amount is None or pay_amount <= 0:
            # Refuse to show the user anything we can't tie to an invoice, an address and an exact amount.
            raise GatewayUnavailable(f"Smart CloudPay create invoice: incomplete answer: {json.dumps(invoice)[:300]}")
        expires = _first(invoice, "expires_at", "expired_at", "expdate")
        url = _first_str(invoice, "payment_url", "url")
        return CreatedDeposit(
            order_id=invoice_id,
            address=address,
            pay_amount=pay_amount,
            pay_currency=str(invoice.get("currency") or request.coin).upper(),
            expires_at=expires if isinstance(expires, int) and not isinstance(expires, bool) and expires > 0
            else int(time.time()) + self.lifetime_seconds,
            payment_url=url if url and url.startswith("https://") else None,
            quoted_cents=request.amount_cents,
        )

    async def _fetch(self, order_id: str) -> PaymentUpdate:
        invoice = await self._request("GET", f"/invoice/{quote(order_id, safe='')}", what="get invoice")
        raw = _first_str(invoice, "status", "payment_status")
        status = raw.lower() if raw else None
        txid = _first_str(invoice, "tx_hash", "txid")
        note = None
        if status == "paid":
            state, note = self._paid_state(order_id, invoice)
        elif status in _CANCELLED:
            state = PaymentState.CANCELLED
        elif status in _FAILED:
            state = PaymentState.FAILED
        else:
            state = PaymentState.PENDING
            if status not in ("pending", "unpaid", "waiting", "processing") and str(status) not in self._logged_unknown:
                self._logged_unknown.add(str(status))
                log.warning("smartcloudpay: unrecognised invoice status %r, treated as pending: %s", raw,
                            json.dumps(invoice)[:2000])
        totalusd = _first(invoice, "totalusd")
        if isinstance(totalusd, float):
            totalusd = repr(totalusd)  # a JSON number: its shortest digits, never float arithmetic
        invoice_usd = parse_decimal(totalusd)
        return PaymentUpdate(gateway=NAME, order_id=order_id, state=state, txid=txid, raw_status=status,
                             source="poll", currency=_first_str(invoice, "currency"), note=note, raw=invoice,
                             invoice_usd_cents=None if invoice_usd is None else decimal_to_cents(invoice_usd),
                             due_amount=_decimal(_first(invoice, "amount", "crypto_amount")),
                             received_amount=_decimal(_first(invoice, "received_amount")))

    @staticmethod
    def _paid_state(order_id: str, invoice: dict[str, Any]) -> tuple[PaymentState, str | None]:
        """Paid only when what arrived covers the invoice; a shortfall is held and an excess flagged (ref. 3.5)."""
        received = parse_decimal(_first(invoice, "received_amount"))
        expected = parse_decimal(_first(invoice, "amount"))
        coin = _first_str(invoice, "currency") or ""
        if received is None or expected is None:
            log.warning("smartcloudpay: invoice %s paid without amounts: held for review", order_id)
            return PaymentState.HELD, "paid, but the invoice shows no received amount"
        if received < expected:
            return PaymentState.HELD, f"received {received} of {expected} {coin}".strip()
        if received > expected:
            # The invoice amount is credited; the excess is for a person to refund or credit.
            return PaymentState.PAID, f"received {received} for an invoice of {expected} {coin}".strip()
        return PaymentState.PAID, None

    def read_webhook(self, body: bytes) -> WebhookReading:
        """Unsigned: never settle from the body; only name the invoice to fetch from the API."""
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return WebhookReading(WebhookVerdict.BAD_REQUEST, detail="body is not JSON")
        invoice_id = data.get("invoice_id") if isinstance(data, dict) else None
        if not isinstance(invoice_id, str | int) or isinstance(invoice_id, bool) or not str(invoice_id).strip():
            return WebhookReading(WebhookVerdict.BAD_REQUEST, detail="invoice_id missing")
        return WebhookReading(WebhookVerdict.REFETCH, order_id=str(invoice_id).strip()[:128])

    # --- payouts, balances, wallets (reference 3.3): undocumented answers, looked for in the likely places ---

    async def execute_payout(self, *, reference: str, address: str, amount: Decimal, coin: str,
                             network: str) -> dict[str, Any]:
        """Send `amount` `coin` on our `network` to `address`, at most once per `reference` (`reference_wp`).

        The path is undocumented (POST /api/payout/execute assumed). A repeated reference returns the existing
        payout instead of paying again [assumed, as the test fake does]: a caller that lost the answer may resend.
        Raises PairUnavailable when refused with a 4xx answer (nothing sent [inferred]), GatewayMisconfigured for
        401/403, GatewayUnavailable when the outcome is unknown (timeout, 5xx, 409, unreadable answer).
        """
        if network not in NETWORK_CODES or not amount.is_finite() or amount <= 0:
            raise PairUnavailable(f"Smart CloudPay payout: no network {network!r} or a bad amount {amount}")
        payload = {"recipient_address": address, "amount": "__AMOUNT__", "currency": coin,
                   "chain": NETWORK_CODES[network], "reference_wp": reference}
        # A JSON number written from the Decimal's digits, as for invoices.
        body = json.dumps(payload).replace('"__AMOUNT__"', format(amount, "f")).encode()
        with self.health.track():
            return await self._payout_call("POST", "/payout/execute", what="payout", body=body)

    async def payout_status(self, reference: str) -> dict[str, Any] | None:
        """The gateway's view of one payout (POST /api/payout/status assumed); None when it does not know it (404)."""
        body = json.dumps({"reference_wp": reference}).encode()
        with self.health.track():
            answer = await self._http.request("POST", f"{self._base}/payout/status", what="payout status", data=body,
                                              headers=self._headers)
            if answer.status == 404:
                return None
            return self._unwrap(answer.status, answer.json, answer.text, what="payout status")

    async def prepaid_balance(self) -> Decimal:
        """Remaining prepaid API credits (GET /api/payout/balance/prepaid); the field name is undocumented."""
        with self.health.track():
            data = await self._request("GET", "/payout/balance/prepaid", what="prepaid balance")
            return self._amount_in(data, ("credits", "balance", "prepaid", "remaining"), what="prepaid balance")

    async def chain_balance(self, network: str, currency: str) -> Decimal:
        """On-chain balance of `currency` on our `network` (GET /api/payout/balance/chain?network=BSC&currency=BNB:
        upper case, as in the doc's example)."""
        if network not in NETWORK_CODES:
            raise PairUnavailable(f"Smart CloudPay chain balance: no network {network!r}")
        params = {"network": NETWORK_CODES[network].upper(), "currency": currency.upper()}
        what = f"chain balance {currency}/{network}"
        with self.health.track():
            answer = await self._http.request("GET", f"{self._base}/payout/balance/chain", what=what, params=params,
                                              headers=self._headers)
            data = self._unwrap(answer.status, answer.json, answer.text, what=what)
            return self._amount_in(data, ("balance", "amount"), what=what)

    async def wallets(self) -> list[tuple[str, str]]:
        """(network, address) of the merchant's payout wallets (GET /api/payout/wallets; entry shape undocumented)."""
        with self.health.track():
            data = await self._request("GET", "/payout/wallets", what="wallets")
            items = _first(data, "data", "wallets")
            if isinstance(items, dict):  # {"bsc": "0x..."}
                items = [{"network": key, "address": value} for key, value in items.items()]
            if items is None and all(isinstance(v, str) for k, v in data.items() if k not in ("success", "message")):
                items = [{"network": k, "address": v} for k, v in data.items() if k not in ("success", "message")]
            if not isinstance(items, list):
                raise GatewayUnavailable(f"Smart CloudPay wallets: no list in {json.dumps(data)[:200]}")
        found = []
        for item in items:
            if isinstance(item, dict):
                network = _first_str(item, "network", "chain", "currency") or ""  # "": not reported
                address = _first_str(item, "address", "wallet_address", "wallet")
                if address:
                    found.append((network[:32], address[:128]))
        return found

    async def outgoing_ip(self) -> str:
        """The address Smart CloudPay sees our calls come from (GET /api/public/check-ip, documented), to allow-list.

        A public call: no key is sent with it."""
        with self.health.track():
            answer = await self._http.request("GET", f"{self._base}/public/check-ip", what="IP check")
            if answer.status != 200 or not isinstance(answer.json, dict):
                raise GatewayUnavailable(f"Smart CloudPay IP check: HTTP {answer.status}: {answer.text[:200]}")
            found = answer.json.get("your_ip")
            try:
                return str(ipaddress.ip_address(str(found).strip()))
            except ValueError:
                raise GatewayUnavailable(f"Smart CloudPay IP check: no address in {answer.text[:200]}") from None

    async def payout_history(self, limit: int = 5) -> list[GatewayPayout]:
        """Recent payouts as Smart CloudPay lists them (GET /api/payout/history?limit=N; the entries' shape is
        undocumented: read from the names its payout request uses, anything else shown as not reported)."""
        with self.health.track():
            answer = await self._http.request("GET", f"{self._base}/payout/history", what="payout history",
                                              params={"limit": str(limit)}, headers=self._headers)
            if isinstance(answer.json, list) and 200 <= answer.status < 300:
                items: Any = answer.json
            else:
                data = self._unwrap(answer.status, answer.json, answer.text, what="payout history")
                items = _first(data, "data", "payouts", "history", "items") if isinstance(data, dict) else data
            if not isinstance(items, list):
                raise GatewayUnavailable(f"Smart CloudPay payout history: no list in {answer.text[:200]}")
        found = []
        for item in items[:limit]:
            if not isinstance(item, dict):
                continue
            amount = _decimal(_first(item, "amount"))
            found.append(GatewayPayout(
                reference=(_first_str(item, "reference_wp", "reference", "id") or "")[:64],
                amount=format(amount, "f") if amount is not None else "",
                coin=(_first_str(item, "currency", "coin") or "")[:16],
                network=(_first_str(item, "chain", "network") or "")[:32],
                address=(_first_str(item, "recipient_address", "address") or "")[:128],
                status=(_first_str(item, "status") or "")[:32],
                tx_hash=(_first_str(item, "tx_hash", "txid", "hash") or None)))
        return found

    async def _payout_call(self, method: str, path: str, *, what: str, body: bytes) -> dict[str, Any]:
        answer = await self._http.request(method, f"{self._base}{path}", what=what, data=body, headers=self._headers)
        if 400 <= answer.status < 500 and answer.status not in (401, 403, 409, 429) and isinstance(answer.json, dict):
            raise PairUnavailable(f"Smart CloudPay {what}: refused: HTTP {answer.status}: "
                                  f"{_message(answer.json) or answer.text[:200]}")
        return self._unwrap(answer.status, answer.json, answer.text, what=what)

    @staticmethod
    def _amount_in(data: dict[str, Any], keys: tuple[str, ...], *, what: str) -> Decimal:
        value = _first(data, *keys)
        if isinstance(value, float):
            value = repr(value)  # a JSON number with a fraction: its shortest digits, never float arithmetic
        amount = parse_decimal(value)
        if amount is None:
            raise GatewayUnavailable(f"Smart CloudPay {what}: no amount in {json.dumps(data)[:200]}")
        return amount


def _decimal(value: Any) -> Decimal | None:
    return parse_decimal(repr(value) if isinstance(value, float) else value)


def _first(data: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if data.get(key) is not None:
            return data[key]
    return None


def _first_str(data: dict[str, Any], *keys: str) -> str | None:
    value = _first(data, *keys)
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    return value.strip() if isinstance(value, str) and value.strip() else None


def _message(answer: Any) -> str:
    if isinstance(answer, dict):
        for key in ("message", "error", "errorMessage"):
            value = answer.get(key)
            if isinstance(value, str):
                return value[:300]
    return ""


@dataclass(frozen=True)
class SmartCloudPaySettings(GatewaySettings):
    """SMARTCLOUDPAY_API_URL, _API_KEY, _MERCHANT_ID, _NOTIFY_EMAIL, _PAIRS, _ORIGIN, _CALLBACK_TOKEN."""

    api_key: Secret
    merchant_id: str
    notify_email: str
    api_url: str = "https://www.smartcloudpay.com/api"
    pairs: frozenset[Pair] = DEFAULT_PAIRS
    origin: str | None = None
    callback_token: Secret | None = None  # None: generated once and kept in the database

    @classmethod
    def from_env(cls, env: Env) -> SmartCloudPaySettings:
        key = env.required("SMARTCLOUDPAY_API_KEY", gateway=NAME, hint="set it to the sk_... key from the Merchant "
                           "Dashboard")
        merchant = env.required("SMARTCLOUDPAY_MERCHANT_ID", gateway=NAME, hint="set it to your merchant id")
        email = env.required("SMARTCLOUDPAY_NOTIFY_EMAIL", gateway=NAME,
                             hint="set it to the address Smart CloudPay sends invoice notices to")
        token = env.get("SMARTCLOUDPAY_CALLBACK_TOKEN")
        if token and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", token):
            raise ConfigError("SMARTCLOUDPAY_CALLBACK_TOKEN must be 16 to 128 letters, digits, _ or -; "
                              "or leave it empty and the bot generates one")
        try:
            pairs = parse_pair_filter(env.get("SMARTCLOUDPAY_PAIRS", "USDT:BSC,USDT:TRON,BNB:BSC")) or frozenset()
        except ConfigPairError as exc:
            raise ConfigError(f"SMARTCLOUDPAY_PAIRS: {exc}; write pairs like USDT:BSC,USDT:TRON,BNB:BSC") from None
        unsupported = [str(p) for p in pairs if p.network not in NETWORK_CODES]
        if unsupported:
            raise ConfigError(f"SMARTCLOUDPAY_PAIRS: no Smart CloudPay network for {', '.join(sorted(unsupported))} "
                              f"(it has: {', '.join(NETWORK_CODES)})")
        return cls(api_key=Secret(key), merchant_id=merchant, notify_email=email, pairs=pairs,
                   api_url=env.http_url("SMARTCLOUDPAY_API_URL", "https://www.smartcloudpay.com/api"),
                   origin=env.get("SMARTCLOUDPAY_ORIGIN") or None, callback_token=Secret(token) if token else None)


async def _build(settings: SmartCloudPaySettings, context: GatewayContext) -> BuiltGateway:
    # Its callbacks are unsigned: a secret in the URL keeps strangers from even triggering a look-up.
    token = (settings.callback_token.value if settings.callback_token
             else await get_or_create_secret(context.db, "smartcloudpay_callback_token"))
    register_secret(token)
    public = context.public_url
    if public is None:
        log.warning("PUBLIC_URL is not set: Smart CloudPay can't call back, payments are confirmed by polling only")
    gateway = SmartCloudPayGateway(
        settings.api_url, settings.api_key.value, settings.merchant_id, notification_email=settings.notify_email,
        pairs=settings.pairs, origin=settings.origin,
        callback_url=f"{public}/webhooks/{NAME}?token={token}" if public else None)
    return BuiltGateway(gateway, CallbackPolicy(token=token))


SPEC = GatewaySpec(name=NAME, title="Smart CloudPay", settings=SmartCloudPaySettings.from_env, build=_build,
                   network_codes=NETWORK_CODES,
                   capabilities=(WebhookGateway, CancellableGateway, PrepaidGateway, PayoutGateway,
                                 PayoutHistoryGateway, OutgoingIPGateway))
