"""Fake of the Cryptomus merchant API (``https://api.cryptomus.com``) for tests.

It follows the documented contract (``payment-apis.md`` section 2 and the "Creating an invoice" page) exactly where
that contract is documented: every merchant endpoint is a ``POST`` with a JSON body and the ``merchant`` / ``sign``
headers, ``sign = md5(base64(<raw body bytes>) + payment_key)``, the ``{"state": 0, "result": ...}`` envelope, the
422 ``{"state": 1, "errors": {...}}`` validation shape, the documented business messages ("The network was not found",
"Minimum amount 0.5 USDT", ...), idempotency by ``order_id``, and the payment object's field names. Wherever the
docs are silent the fake makes an explicit assumption, marked ``ASSUMPTION`` in the comments below.

Usage::

    async with FakeCryptomus() as fake:
        # the bot's CRYPTOMUS_API_URL = fake.base_url (no /v1 suffix; clients append /v1/...)
        ...
        order_id = fake.last_order_id()
        fake.set_status(order_id, "paid")
        status, text = await fake.send_webhook(bot_webhook_url, order_id)

Webhooks are built exactly as the reference's verification algorithm (2.9) expects: keys in Cryptomus' order, ``sign``
appended last, and the body serialised the way PHP's ``json_encode(..., JSON_UNESCAPED_UNICODE)`` does (compact,
raw UTF-8, ``/`` escaped as ``\\/``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import time
import uuid as uuid_mod
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.server import FakeServer, Fault, fake_address
from multidict import CIMultiDict

__all__ = [
    "DEFAULT_SERVICES",
    "FAKE_RATES_USD",
    "FINAL_STATUSES",
    "PAID_STATUSES",
    "FakeCryptomus",
    "RecordedRequest",
    "cryptomus_sign",
    "php_json",
]


# ---------------------------------------------------------------------------------------------- signing helpers


def php_json(data: Any) -> str:
    """Same string as PHP ``json_encode($data, JSON_UNESCAPED_UNICODE)``: compact, raw UTF-8, ``/`` escaped."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


def cryptomus_sign(payload: str | bytes, key: str) -> str:
    """``md5(base64(payload) + key)`` as lower-case hex (reference 2.2 / 2.9). ``str`` payloads are UTF-8 encoded."""
    raw = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
    return hashlib.md5(base64.b64encode(raw) + key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------------------------- fake market data

# ASSUMPTION: fixed fake exchange rates, USD per unit. Fiat entries make "currency": "EUR" invoices work.
FAKE_RATES_USD: dict[str, Decimal] = {
    # fiat
    "USD": Decimal(1),
    "EUR": Decimal("1.08"),
    "GBP": Decimal("1.27"),
    "RUB": Decimal("0.011"),
    "UAH": Decimal("0.024"),
    "KZT": Decimal("0.0021"),
    # crypto
    "USDT": Decimal(1),
    "USDC": Decimal(1),
    "DAI": Decimal(1),
    "BTC": Decimal(60000),
    "ETH": Decimal(3000),
    "LTC": Decimal(80),
    "TRX": Decimal("0.12"),
    "BNB": Decimal(600),
    "SOL": Decimal(150),
    "TON": Decimal(5),
    "DOGE": Decimal("0.15"),
    "XMR": Decimal(150),
    "POL": Decimal("0.5"),
    "DASH": Decimal(30),
    "BCH": Decimal(400),
    "AVAX": Decimal(30),
    "SHIB": Decimal("0.00002"),
}
FIAT_CURRENCIES = frozenset({"USD", "EUR", "GBP", "RUB", "UAH", "KZT"})


def _service(currency: str, network: str, min_amount: str, max_amount: str, *, available: bool = True,
             fee_amount: str = "0.00", percent: str = "2.00") -> dict:
    return {
        "network": network,
        "currency": currency,
        "is_available": available,
        "limit": {"min_amount": min_amount, "max_amount": max_amount},
        # ASSUMPTION: a flat 2 % commission (the reference's webhook test vector: 5.00 paid -> 4.90 merchant).
        "commission": {"fee_amount": fee_amount, "percent": percent},
    }


# Shape per reference 2.5; the values are fake. Network codes lower case, as Cryptomus uses them.
DEFAULT_SERVICES: list[dict] = [
    _service("USDT", "tron", "1.00000000", "10000000.00000000"),
    _service("USDT", "bsc", "1.00000000", "10000000.00000000"),
    _service("USDT", "eth", "1.00000000", "10000000.00000000"),
    _service("BTC", "btc", "0.00010000", "100.00000000"),
    _service("ETH", "eth", "0.00100000", "1000.00000000"),
    _service("LTC", "ltc", "0.01000000", "10000.00000000"),
    _service("TRX", "tron", "5.00000000", "10000000.00000000"),
    _service("BNB", "bsc", "0.00500000", "10000.00000000"),
    _service("TON", "ton", "0.20000000", "1000000.00000000"),
    _service("DOGE", "doge", "5.00000000", "10000000.00000000", available=False),
]

# Reference 2.7: the resend page calls paid/paid_over/wrong_amount final, the info example shows cancel as final;
# the rest are [inferred] there.
FINAL_STATUSES = frozenset({"paid", "paid_over", "wrong_amount", "cancel", "fail", "system_fail", "refund_paid"})
PAID_STATUSES = frozenset({"paid", "paid_over"})
# Statuses in which a transaction has been seen on chain (the fake fills payment_amount, from and txid).
_TX_SEEN_STATUSES = frozenset({"confirm_check", "wrong_amount_waiting", "paid", "paid_over", "wrong_amount",
                               "refund_process", "refund_fail", "refund_paid", "locked"})

# Order of the webhook keys (reference 2.8 / 2.9 test vector). `sign` is appended after these.
WEBHOOK_KEYS = ("type", "uuid", "order_id", "amount", "payment_amount", "payment_amount_usd", "merchant_amount",
                "commission", "is_final", "status", "from", "wallet_address_uuid", "network", "currency",
                "payer_currency", "additional_data", "txid")

_UTC3 = timezone(timedelta(hours=3))  # documented: created_at/updated_at are UTC+3
_Q8 = Decimal("0.00000001")
_Q2 = Decimal("0.01")
_AMOUNT_RE = re.compile(r"^\d+(\.\d+)?$")
_ALPHA_DASH_RE = re.compile(r"^[A-Za-z0-9_-]+$")
# ASSUMPTION: Laravel's `url` rule is broader; the fake accepts http(s) URLs with a host (IP literals included).
_URL_RE = re.compile(r"^https?://[^\s/?#]+(?:[/?#]\S*)?$", re.IGNORECASE)
_EVM_NETWORKS = frozenset({"bsc", "eth", "polygon", "arbitrum", "avalanche"})


def _fake_txid(network: str | None, seed: str) -> str:
    h = hashlib.sha256(f"tx:{seed}".encode()).hexdigest()
    return "0x" + h if network in _EVM_NETWORKS else h


def _fmt_limit(value: str) -> str:
    """'0.50000000' -> '0.5', '10000000.00000000' -> '10000000' (the documented message style)."""
    d = Decimal(value).normalize()
    return format(d, "f")


def _now_iso() -> str:
    return datetime.now(_UTC3).replace(microsecond=0).isoformat()


def _response_json(payload: Any, status: int = 200) -> web.Response:
    # ASSUMPTION (inferred): Cryptomus is a Laravel app whose JSON responses use json_encode's defaults, i.e.
    # `/` escaped as `\/` and non-ASCII as \uXXXX. Any JSON parser reads that; it keeps clients honest.
    text = json.dumps(payload, separators=(",", ":")).replace("/", "\\/")
    return web.Response(status=status, text=text, content_type="application/json")


def _error(message: str, status: int = 422) -> web.Response:
    # The documented business errors are listed under "Validation errors, code: 422"; the page gives messages only,
    # so ASSUMPTION: every `{"state": 1, "message": ...}` answer of /v1/payment comes with HTTP 422.
    return _response_json({"state": 1, "message": message}, status=status)


def _validation(errors: dict[str, list[str]]) -> web.Response:
    return _response_json({"state": 1, "errors": errors}, status=422)


# ---------------------------------------------------------------------------------------------- records


@dataclass
class RecordedRequest:
    """One request as the fake received it (recorded before authentication and any fault injection)."""

    method: str
    path: str
    headers: CIMultiDict  # case-insensitive: r.headers["sign"], r.headers["Merchant"]
    body: bytes  # the exact raw bytes
    json: Any  # parsed JSON body, or None when empty / not JSON

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class SentWebhook:
    url: str
    body: bytes
    status: int | None
    response_text: str


@dataclass
class _Invoice:
    obj: dict  # the payment object exactly as the API returns it
    request: dict  # the create request body as received
    webhook: dict = field(default_factory=dict)  # webhook-only fields: payment_amount_usd, commission, ...


# ---------------------------------------------------------------------------------------------- the fake


class FakeCryptomus(FakeServer):
    """In-process HTTP fake of the Cryptomus merchant API (payment key endpoints)."""

    def __init__(
        self,
        merchant_id: str = "merchant-uuid-1",
        payment_key: str = "test-payment-key",
        services: list[dict] | None = None,
    ) -> None:
        self.merchant_id = merchant_id
        self.payment_key = payment_key
        self.services: list[dict] = json.loads(json.dumps(services if services is not None else DEFAULT_SERVICES))
        self.rates: dict[str, Decimal] = dict(FAKE_RATES_USD)
        self.requests: list[RecordedRequest] = []
        self.webhooks_sent: list[SentWebhook] = []
        # Account state for POST /v1/balance (keep it simple; tests may edit these lists).
        self.merchant_balances: list[dict] = [
            {"uuid": str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, f"merchant:{c}")), "balance": "0.00000000",
             "currency_code": c, "balance_usd": "0.00"} for c in ("USDT", "BTC", "ETH", "LTC", "TRX", "BNB", "TON")
        ]
        self.user_balances: list[dict] = [
            {"uuid": str(uuid_mod.uuid5(uuid_mod.NAMESPACE_URL, "user:USDT")), "balance": "0.00000000",
             "currency_code": "USDT", "balance_usd": "0.00"},
        ]
        # ASSUMPTION: an unpaid invoice ("check") whose expired_at has passed reads as "cancel"/is_final on the next
        # read, as on the real service. Set False to freeze invoices.
        self.auto_expire: bool = True
        # ASSUMPTION: the fake echoes `amount` as sent ("15"); the doc's example shows "15.00" for "15". Set True to
        # normalise to two decimals like that example.
        self.normalize_amount: bool = False
        self.base_url: str | None = None

        self._invoices: dict[str, _Invoice] = {}  # order_id -> invoice (insertion-ordered)
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_inject])
        app.router.add_post("/v1/payment", self._create)
        app.router.add_post("/v1/payment/info", self._info)
        app.router.add_post("/v1/payment/services", self._services)
        app.router.add_post("/v1/balance", self._balance)
        return app

    # ------------------------------------------------------------------ test controls

    def sign(self, payload: str | bytes) -> str:
        """The request ``sign`` header for ``payload`` with this fake's payment key."""
        return cryptomus_sign(payload, self.payment_key)

    def headers_for(self, body: bytes | str) -> dict[str, str]:
        """Correct ``merchant``/``sign``/Content-Type headers for sending ``body`` (a test convenience)."""
        return {"merchant": self.merchant_id, "sign": self.sign(body), "Content-Type": "application/json"}

    def invoice(self, order_id: str) -> dict:
        """The stored payment object (the live dict; KeyError for an unknown order_id)."""
        inv = self._invoices[order_id]
        self._maybe_expire(inv)
        return inv.obj

    def invoice_request(self, order_id: str) -> dict:
        """The JSON body of the create request that made this invoice (e.g. to read ``url_callback``)."""
        return self._invoices[order_id].request

    @property
    def invoices(self) -> dict[str, dict]:
        """order_id -> payment object, in creation order."""
        return {oid: inv.obj for oid, inv in self._invoices.items()}

    def last_order_id(self) -> str | None:
        """The order_id of the most recently created invoice, or None."""
        return next(reversed(self._invoices), None)

    def set_status(
        self,
        order_id: str,
        status: str,
        *,
        payment_amount_usd: str | None = None,
        payer_amount: str | None = None,
        is_final: bool | None = None,
        txid: str | None = None,
        payment_amount: str | None = None,
        payer_currency: str | None = None,
        network: str | None = None,
        from_address: str | None = None,
    ) -> dict:
        """Change an invoice's ``status`` and ``payment_status`` (any string) and return the payment object.

        ``is_final`` defaults to True for paid/paid_over/wrong_amount/cancel/fail/system_fail/refund_paid.
        ``payer_amount`` overrides the amount *due* in the coin; ``payment_amount`` is the amount actually *paid*
        (coin units). For statuses where a transaction exists (confirm_check, paid, paid_over, wrong_amount, ...)
        missing values are filled in: payment_amount = payer_amount (half of it for wrong_amount[_waiting], +10 % for
        paid_over), payment_amount_usd from the fake rates, merchant_amount/commission from the service commission,
        ``from`` and ``txid`` fake. An invoice created without a coin gets ``payer_currency``/``network``
        (default USDT/tron) and an address, as if the payer had chosen them on the payment page.
        """
        inv = self._invoices[order_id]  # KeyError for an unknown order: a test bug
        obj = inv.obj
        if payer_currency is not None or network is not None or (
                status in _TX_SEEN_STATUSES and (obj["payer_currency"] is None or obj["network"] is None)):
            coin = (payer_currency or obj["payer_currency"] or "USDT").upper()
            net = (network or obj["network"] or self._only_network(coin) or "tron").lower()
            obj["payer_currency"] = coin
            obj["network"] = net
            if obj["address"] is None:
                obj["address"] = fake_address(net, obj["uuid"])
            if obj["payer_amount"] is None:
                obj["payer_amount"] = str(self._convert(obj["amount"], obj["currency"], coin))
        if payer_amount is not None:
            obj["payer_amount"] = str(payer_amount)

        obj["status"] = status
        obj["payment_status"] = status
        obj["is_final"] = (status in FINAL_STATUSES) if is_final is None else bool(is_final)

        if payment_amount is None and status in _TX_SEEN_STATUSES and obj["payment_amount"] in (None, "0.00"):
            due = Decimal(obj["payer_amount"])
            if status in ("wrong_amount", "wrong_amount_waiting"):
                due = due / 2
            elif status == "paid_over":
                due = due * Decimal("1.1")
            payment_amount = str(due.quantize(_Q8, ROUND_HALF_UP))
        if payment_amount is not None:
            obj["payment_amount"] = str(payment_amount)
        elif obj["payment_amount"] is None and obj["is_final"]:
            obj["payment_amount"] = "0.00"  # the doc's info example: a cancelled invoice shows "0.00"

        paid = obj["payment_amount"]
        if paid is not None and Decimal(paid) > 0 and obj["payer_currency"]:
            paid_d = Decimal(paid)
            fee, pct = self._commission(obj["payer_currency"], obj["network"])
            merchant = max(Decimal(0), paid_d * (1 - pct / 100) - fee).quantize(_Q8, ROUND_HALF_UP)
            obj["merchant_amount"] = str(merchant)
            inv.webhook["commission"] = str((paid_d - merchant).quantize(_Q8, ROUND_HALF_UP))
            rate = self.rates.get(obj["payer_currency"].upper(), Decimal(1))
            inv.webhook["payment_amount_usd"] = str((paid_d * rate).quantize(_Q2, ROUND_HALF_UP))
        if payment_amount_usd is not None:
            inv.webhook["payment_amount_usd"] = str(payment_amount_usd)

        if status in _TX_SEEN_STATUSES:
            if obj["from"] is None or from_address is not None:
                obj["from"] = from_address or fake_address(obj["network"] or "tron", "payer:" + obj["uuid"])
            if obj["txid"] is None and txid is None:
                obj["txid"] = _fake_txid(obj["network"], obj["uuid"])
        if txid is not None:
            obj["txid"] = txid
        obj["updated_at"] = _now_iso()
        return obj

    def requests_to(self, path: str) -> list[RecordedRequest]:
        """Recorded requests whose path equals ``path`` exactly."""
        return [r for r in self.requests if r.path == path]

    # ------------------------------------------------------------------ webhooks

    def webhook_data(self, order_id: str, *, status: str | None = None, additional_data: Any = ...,
                     extra: dict | None = None) -> dict:
        """The webhook object without ``sign``, keys in Cryptomus order (``extra`` keys update/append)."""
        inv = self._invoices[order_id]
        self._maybe_expire(inv)
        obj = inv.obj
        st = obj["status"] if status is None else status
        is_final = obj["is_final"] if status is None else status in FINAL_STATUSES
        data: dict[str, Any] = {
            "type": "payment",
            "uuid": obj["uuid"],
            "order_id": obj["order_id"],
            "amount": obj["amount"],
            "payment_amount": obj["payment_amount"],
            "payment_amount_usd": inv.webhook.get("payment_amount_usd", "0.00"),
            "merchant_amount": obj["merchant_amount"],
            "commission": inv.webhook.get("commission", "0.00"),
            "is_final": is_final,
            "status": st,
            "from": obj["from"],
            "wallet_address_uuid": None,
            "network": obj["network"],
            "currency": obj["currency"],
            "payer_currency": obj["payer_currency"],
            "additional_data": obj["additional_data"] if additional_data is ... else additional_data,
            "txid": obj["txid"],
        }
        if extra:
            data.update(extra)
        return data

    def webhook_body(self, order_id: str, *, status: str | None = None, additional_data: Any = ...,
                     extra: dict | None = None, key: str | None = None) -> bytes:
        """The exact bytes Cryptomus would POST for this invoice's current state.

        ``status`` overrides the status in the body only (the stored invoice is not changed; call ``set_status``
        first for a consistent story); ``additional_data`` overrides the invoice's; ``extra`` adds/replaces keys
        (before ``sign``). ``sign = md5(base64(php_json(data)) + key)`` is appended last; the body is the PHP-style
        encoding of the full object. ``key`` defaults to the payment key.
        """
        data = self.webhook_data(order_id, status=status, additional_data=additional_data, extra=extra)
        data["sign"] = cryptomus_sign(php_json(data), self.payment_key if key is None else key)
        return php_json(data).encode("utf-8")

    def forge_webhook_body(self, order_id: str, *, key: str = "forged-wrong-key", **kw: Any) -> bytes:
        """Like ``webhook_body`` but signed with a wrong key (must be rejected by the bot)."""
        if key == self.payment_key:
            raise ValueError("forge_webhook_body needs a key other than the payment key")
        return self.webhook_body(order_id, key=key, **kw)

    async def send_webhook(self, url: str | None, order_id: str, *, body: bytes | None = None,
                           headers: dict[str, str] | None = None, timeout: float = 10.0,
                           **kw: Any) -> tuple[int, str]:
        """POST a webhook (``webhook_body(order_id, **kw)`` unless ``body`` is given) from 127.0.0.1.

        ``url=None`` uses the invoice's ``url_callback``. Returns ``(status_code, response_text)``.
        """
        if url is None:
            url = self._invoices[order_id].request.get("url_callback")
            if not url:
                raise ValueError(f"invoice {order_id!r} has no url_callback")
        raw = self.webhook_body(order_id, **kw) if body is None else body
        hdrs = {"Content-Type": "application/json"}
        hdrs.update(headers or {})
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.1", 0))
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as session:
            async with session.post(url, data=raw, headers=hdrs) as resp:
                text = await resp.text()
                self.webhooks_sent.append(SentWebhook(url, raw, resp.status, text))
                return resp.status, text

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _record_and_inject(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw = await request.read() if request.can_read_body else b""
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        self.requests.append(RecordedRequest(request.method, request.path, CIMultiDict(request.headers), raw, parsed))

        injected = await self._inject_fault(request)
        if injected is not None:
            return injected
        return await handler(request)

    # ------------------------------------------------------------------ helpers

    async def _auth(self, request: web.Request) -> tuple[bytes, Any] | web.Response:
        """(raw body, parsed body) if merchant and sign match, else the 401 answer."""
        raw = await request.read()
        merchant = request.headers.get("merchant")
        sign = request.headers.get("sign")
        # The sign is checked against the RAW bytes received (reference 2.2: the server hashes the raw body).
        # ASSUMPTION: the real answer for a wrong/missing merchant or sign is undocumented; the fake uses 401 with
        # the state-1 envelope.
        if merchant != self.merchant_id or not sign or sign != cryptomus_sign(raw, self.payment_key):
            return _response_json({"state": 1, "message": "Unauthorized"}, status=401)
        try:
            parsed = json.loads(raw) if raw.strip() else {}
        except ValueError:
            parsed = {}  # ASSUMPTION: an unparsable body is treated like an empty parameter set
        return raw, parsed

    def _find_service(self, coin: str, network: str) -> dict | None:
        for s in self.services:
            if s["currency"].upper() == coin.upper() and s["network"].lower() == network.lower():
                return s
        return None

    def _available_networks(self, coin: str) -> list[str]:
        return [s["network"] for s in self.services if s["currency"].upper() == coin.upper() and s["is_available"]]

    def _only_network(self, coin: str) -> str | None:
        nets = self._available_networks(coin)
        return nets[0] if len(nets) == 1 else None

    def _is_crypto(self, code: str) -> bool:
        code = code.upper()
        return code not in FIAT_CURRENCIES and (code in self.rates or any(
            s["currency"].upper() == code for s in self.services))

    def _convert(self, amount: str, currency: str, coin: str) -> Decimal:
        src = self.rates.get(currency.upper())
        dst = self.rates.get(coin.upper())
        if src is None or dst is None:
            raise KeyError(currency if src is None else coin)
        return (Decimal(amount) * src / dst).quantize(_Q8, ROUND_HALF_UP)

    def _commission(self, coin: str, network: str | None) -> tuple[Decimal, Decimal]:
        svc = self._find_service(coin, network) if network else None
        if svc is None:
            return Decimal(0), Decimal(2)
        c = svc.get("commission") or {}
        return Decimal(str(c.get("fee_amount") or 0)), Decimal(str(c.get("percent") or 0))

    def _maybe_expire(self, inv: _Invoice) -> None:
        obj = inv.obj
        if self.auto_expire and obj["status"] == "check" and not obj["is_final"] and time.time() > obj["expired_at"]:
            obj["status"] = obj["payment_status"] = "cancel"
            obj["is_final"] = True
            if obj["payment_amount"] is None:
                obj["payment_amount"] = "0.00"
            obj["updated_at"] = _now_iso()

    @staticmethod
    def _validate_create(body: dict) -> dict[str, list[str]]:
        errors: dict[str, list[str]] = {}

        def err(name: str, rule: str) -> None:
            errors.setdefault(name, []).append(rule)

        def present(name: str) -> bool:
            return name in body and body[name] is not None and body[name] != ""

        def string(name: str, *, required: bool = False, min_len: int | None = None,
                   max_len: int | None = None) -> bool:
            if not present(name):
                if required:
                    err(name, "validation.required")
                return False
            v = body[name]
            if not isinstance(v, str):
                err(name, "validation.string")
                return False
            if min_len is not None and len(v) < min_len:
                err(name, "validation.min.string")
                return False
            if max_len is not None and len(v) > max_len:
                err(name, "validation.max.string")
                return False
            return True

        def integer(name: str, lo: int, hi: int) -> None:
            if not present(name):
                return
            v = body[name]
            if isinstance(v, bool) or not isinstance(v, int):
                # ASSUMPTION: Laravel's `integer` rule would also accept "3600"; the fake is strict on the type.
                if not (isinstance(v, str) and re.fullmatch(r"-?\d+", v)):
                    err(name, "validation.integer")
                    return
                v = int(v)
            if v < lo:
                err(name, "validation.min.numeric")
            elif v > hi:
                err(name, "validation.max.numeric")

        # amount: required string, decimal with "." separator. ASSUMPTION: a JSON number is refused as not a string.
        if string("amount", required=True) and not _AMOUNT_RE.match(body["amount"]):
            err("amount", "validation.numeric")
        string("currency", required=True)
        if string("order_id", required=True, min_len=1, max_len=128) and not _ALPHA_DASH_RE.match(body["order_id"]):
            err("order_id", "validation.alpha_dash")
        string("network")
        string("to_currency")
        for name in ("url_return", "url_success", "url_callback"):
            if string(name, min_len=6, max_len=255) and not _URL_RE.match(body[name]):
                err(name, "validation.url")
        integer("lifetime", 300, 43200)
        integer("subtract", 0, 100)
        integer("discount_percent", -99, 100)
        string("additional_data", max_len=255)
        string("course_source", min_len=4, max_len=20)
        for name in ("is_payment_multiple", "is_refresh"):
            if present(name) and not isinstance(body[name], bool):
                err(name, "validation.boolean")
        return errors

    # ------------------------------------------------------------------ handlers

    async def _create(self, request: web.Request) -> web.Response:
        auth = await self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        _, body = auth
        if not isinstance(body, dict):
            body = {}
        errors = self._validate_create(body)
        if errors:
            return _validation(errors)

        order_id: str = body["order_id"]
        existing = self._invoices.get(order_id)
        if existing is not None:
            # Documented: an existing order_id returns the existing invoice; no new one is created.
            self._maybe_expire(existing)
            if body.get("is_refresh") is True and time.time() > existing.obj["expired_at"]:
                # Documented: only address, payment_status and expired_at change.
                lifetime = int(body.get("lifetime", 3600))
                net = existing.obj["network"]
                if net:
                    existing.obj["address"] = fake_address(net, f"{existing.obj['uuid']}:{time.time_ns()}")
                existing.obj["payment_status"] = "check"
                existing.obj["expired_at"] = int(time.time()) + lifetime
            return _response_json({"state": 0, "result": existing.obj})

        currency: str = body["currency"]
        if currency.upper() not in self.rates and not self._is_crypto(currency):
            return _error("The currency was not found")
        to_currency = body.get("to_currency") or None
        if to_currency is not None and (not self._is_crypto(to_currency) or not any(
                s["currency"].upper() == to_currency.upper() for s in self.services)):
            return _error("Not found service to_currency")
        coin: str | None = (to_currency or (currency if self._is_crypto(currency) else None))
        coin = coin.upper() if coin else None

        network_in = body.get("network") or None
        service: dict | None = None
        network: str | None = None
        if network_in is not None:
            # ASSUMPTION: codes are matched case-insensitively and stored lower case.
            service = self._find_service(coin, network_in) if coin else None
            if service is None or not service["is_available"]:
                return _error("The network was not found")
            network = service["network"].lower()
        elif coin is not None:
            only = self._only_network(coin)  # documented: a coin with a single network (BTC) needs no network
            if only is not None:
                service = self._find_service(coin, only)
                network = only.lower()

        payer_amount: str | None = None
        discount = "0.00000000"
        discount_percent = body.get("discount_percent")
        if coin is not None:
            try:
                converted = self._convert(body["amount"], currency, coin)
            except KeyError:
                return _error("Error convert to_currency")
            payer = converted
            if discount_percent is not None and network is not None:
                # Doc's info example: discount_percent -5 on 15.00 -> discount "-0.75", payer_amount "15.75".
                disc = (converted * Decimal(int(discount_percent)) / 100).quantize(_Q8, ROUND_HALF_UP)
                discount = str(disc)
                payer = converted - disc
            if service is not None:
                lim = service.get("limit") or {}
                if lim.get("min_amount") is not None and converted < Decimal(str(lim["min_amount"])):
                    return _error(f"Minimum amount {_fmt_limit(str(lim['min_amount']))} {coin}")
                if lim.get("max_amount") is not None and converted > Decimal(str(lim["max_amount"])):
                    return _error(f"Maximum amount {_fmt_limit(str(lim['max_amount']))} {coin}")
            payer_amount = str(payer.quantize(_Q8, ROUND_HALF_UP))

        inv_uuid = str(uuid_mod.uuid4())
        now = _now_iso()
        amount = body["amount"]
        if self.normalize_amount:
            amount = str(Decimal(amount).quantize(_Q2, ROUND_HALF_UP))
        obj = {
            "uuid": inv_uuid,
            "order_id": order_id,
            "amount": amount,
            "payment_amount": None,
            "payer_amount": payer_amount,
            "discount_percent": discount_percent,
            "discount": discount,
            "payer_currency": coin,
            "currency": currency,
            "merchant_amount": None,
            "network": network,
            "address": fake_address(network, inv_uuid) if network else None,
            "from": None,
            "txid": None,
            "payment_status": "check",
            "url": f"https://pay.cryptomus.com/pay/{inv_uuid}",
            "expired_at": int(time.time()) + int(body.get("lifetime") or 3600),
            "status": "check",
            "is_final": False,
            "additional_data": body.get("additional_data"),
            "created_at": now,
            "updated_at": now,
        }
        self._invoices[order_id] = _Invoice(obj=obj, request=dict(body))
        return _response_json({"state": 0, "result": obj})

    async def _info(self, request: web.Request) -> web.Response:
        auth = await self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        _, body = auth
        if not isinstance(body, dict):
            body = {}
        order_id = body.get("order_id") or None
        inv_uuid = body.get("uuid") or None
        if order_id is None and inv_uuid is None:
            return _validation({"uuid": ["validation.required_without"], "order_id": ["validation.required_without"]})
        if order_id is not None:  # documented: order_id wins when both are sent
            inv = self._invoices.get(str(order_id))
        else:
            inv = next((i for i in self._invoices.values() if i.obj["uuid"] == inv_uuid), None)
        if inv is None:
            # ASSUMPTION: the message is documented for resend (2.11); the HTTP status (404) is a guess.
            return _error("Payment not found", status=404)
        self._maybe_expire(inv)
        return _response_json({"state": 0, "result": inv.obj})

    async def _services(self, request: web.Request) -> web.Response:
        # No parameters. Any body is accepted as long as the sign matches the bytes sent: an empty body signed as ""
        # (the doc's text), "{}" signed as "{}" (the doc's curl) or "[]" (the PHP SDK).
        auth = await self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        return _response_json({"state": 0, "result": self.services})

    async def _balance(self, request: web.Request) -> web.Response:
        auth = await self._auth(request)
        if isinstance(auth, web.Response):
            return auth
        # Shape per the Cryptomus balance page (endpoint listed in reference 2.12); values are fake.
        return _response_json({"state": 0, "result": [
            {"balance": {"merchant": self.merchant_balances, "user": self.user_balances}}
        ]})
