"""Fake of the Smart CloudPay merchant API (current revision of https://smartcloudpay.com/api-docs.html) for tests.

It follows the documented contract (see ``payment-apis.md`` section 3 and ``seeds/smartcloudpay-api.txt``) where that
contract is documented: the ``/api`` paths, the ``x-api-key`` / ``merchant-id`` headers, the create-invoice request
fields (amounts as JSON numbers), the payout request bodies, the utility endpoints and the UNSIGNED webhook payload.
Almost every response shape is undocumented; the fake makes an explicit assumption there, marked ``ASSUMPTION`` in
the comments below, and exposes knobs (``create_shape``, ``status_field``, ``pairs``) where tests may need to vary it.

Usage::

    async with FakeSmartCloudPay() as fake:
        # the bot's SMARTCLOUDPAY_API_URL = fake.base_url ("http://127.0.0.1:PORT/api");
        # clients append "/payment/invoice/create", "/invoice/<id>", ...
        ...
        inv = fake.last_invoice_id()
        await fake.send_webhook(fake.invoice(inv)["callback_url"], inv)   # "paid" hint, API still says pending
        fake.set_status(inv, "paid")                                        # now GET /api/invoice/<id> says paid

The fake disables the aiohttp access log and never echoes the API key in a response. ``requests`` keeps the headers
(including the key) so tests can assert on them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import aiohttp
from aiohttp import web

from tests.fakes.server import FakeServer, Fault, fake_address

__all__ = ["CREATE_SHAPES", "DEFAULT_PAIRS", "FAKE_PRICES_USD", "STABLECOINS", "FakeSmartCloudPay", "RecordedRequest"]

# ASSUMPTION: the real currency/network matrix is undocumented. Documented examples: USDT on bsc (and tron in the
# legacy API), BNB on bsc; TRX on tron and USDT/ETH on the default network "evm" are plausible additions.
# Network codes are lower case as in the invoice examples; matching is case-sensitive (ASSUMPTION: undocumented).
DEFAULT_PAIRS: frozenset[tuple[str, str]] = frozenset({
    ("USDT", "bsc"),
    ("USDT", "tron"),
    ("BNB", "bsc"),
    ("TRX", "tron"),
    ("USDT", "evm"),
    ("ETH", "evm"),
})

STABLECOINS = frozenset({"USDT", "USDC", "DAI"})

# ASSUMPTION: fixed fake prices (USD per coin) used to convert between `totalusd` and the coin `amount`.
FAKE_PRICES_USD: dict[str, Decimal] = {
    "USDT": Decimal(1),
    "USDC": Decimal(1),
    "DAI": Decimal(1),
    "BNB": Decimal(600),
    "TRX": Decimal("0.12"),
    "ETH": Decimal(3000),
    "BTC": Decimal(60000),
}

CREATE_SHAPES = ("data", "flat", "no_address")

_Q2 = Decimal("0.01")
_Q8 = Decimal("0.00000001")


@dataclass
class RecordedRequest:
    """One request as the fake received it (recorded before auth checks and fault injection)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any  # parsed JSON body (floats as float), or None when the body is empty or not JSON
    text: str  # raw body text: assert on it to check the exact number formatting the client sent
    headers: dict[str, str]


def _fake_tx_hash(network: str, seed: str) -> str:
    digest = hashlib.sha256(f"tx:{network}:{seed}".encode()).hexdigest()
    return digest if network == "tron" else "0x" + digest


def _error(status: int, message: str) -> web.Response:
    # ASSUMPTION: the error envelope is undocumented; {"success": false, "message": ...} is the shape used throughout.
    return web.json_response({"success": False, "message": message}, status=status)


def _fmt_coin(value: Decimal, currency: str) -> str:
    # ASSUMPTION: stablecoin amounts as strings with 2 decimals (the webhook example says "100.00"); other coins with
    # up to 8 decimals, trailing zeros dropped.
    if currency in STABLECOINS:
        return str(value.quantize(_Q2))
    text = format(value.quantize(_Q8).normalize(), "f")
    return text


def _as_number(value: Any) -> Decimal | None:
    """The value as a Decimal if it is a JSON number (not a string, not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        return None
    try:
        d = Decimal(value)
    except InvalidOperation:  # pragma: no cover - NaN/Infinity are not produced by parse_float=Decimal
        return None
    return d if d.is_finite() else None


class FakeSmartCloudPay(FakeServer):
    base_path = "/api"  # the bot's SMARTCLOUDPAY_API_URL ends in /api
    """In-process HTTP fake of the Smart CloudPay merchant API (invoices, payouts, utilities, webhooks)."""

    def __init__(self, api_key: str = "sk_test_key", merchant_id: str = "merchant-1") -> None:
        self.api_key = api_key
        self.merchant_id = merchant_id
        self.pairs: set[tuple[str, str]] = set(DEFAULT_PAIRS)  # (CURRENCY, network) allow-list; tests may edit
        self.prices: dict[str, Decimal] = dict(FAKE_PRICES_USD)

        self.invoices: dict[str, dict] = {}  # invoice_id -> stored invoice (insertion-ordered)
        self.payouts: dict[str, dict] = {}  # reference_wp -> payout (insertion-ordered)
        self.requests: list[RecordedRequest] = []
        self.webhooks_sent: list[dict] = []  # {"url", "body", "status", "text"} for each send_webhook call

        # Knobs for the undocumented responses.
        self.create_shape: str = "data"  # "data" | "flat" | "no_address"; see _create_invoice
        self.status_field: str | None = "status"  # GET /api/invoice: "status", "payment_status", or None (omitted)
        self.invoice_lifetime: int = 3600  # seconds until expires_at (ASSUMPTION: lifetime undocumented)
        self.prepaid_credits: int = 100
        # (NETWORK, CURRENCY) upper case -> balance string. ASSUMPTION: unknown pairs report "0".
        self.chain_balances: dict[tuple[str, str], str] = {("BSC", "BNB"): "1.5"}
        self.wallets: list[dict] = [  # ASSUMPTION: shape of GET /api/payout/wallets entries
            {"network": "bsc", "address": fake_address("bsc", "merchant-wallet")},
            {"network": "tron", "address": fake_address("tron", "merchant-wallet")},
        ]
        self.your_ip: str | None = None  # None: report the caller's address (127.0.0.1 in tests)

        self.base_url: str | None = None
        self._next_invoice = 10001
        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_inject_auth])
        r = app.router
        r.add_post("/api/payment/invoice/create", self._create_invoice)
        r.add_post("/api/payment/invoice/cancel/{invoice_id}", self._cancel_invoice)
        r.add_get("/api/invoice/{invoice_id}", self._get_invoice)
        # ASSUMPTION: the execute-payout and payout-status paths/methods are undocumented.
        r.add_post("/api/payout/execute", self._payout_execute)
        r.add_post("/api/payout/status", self._payout_status)
        r.add_get("/api/payout/history", self._payout_history)
        r.add_get("/api/payout/wallets", self._payout_wallets)
        r.add_get("/api/payout/balance/prepaid", self._balance_prepaid)
        r.add_get("/api/payout/balance/chain", self._balance_chain)
        r.add_get("/api/public/check-ip", self._check_ip)
        return app

    # ------------------------------------------------------------------ test controls

    def invoice(self, invoice_id: str) -> dict:
        """The stored invoice (a live dict; KeyError for an unknown id). Keys: invoice_id, address, amount,
        totalusd, currency, network, status, received_amount, tx_hash, expires_at, payment_url, customer_name,
        notification_emails, callback_url, created_at."""
        return self.invoices[invoice_id]

    def last_invoice_id(self) -> str | None:
        """The id of the most recently created invoice, or None when there is none."""
        return next(reversed(self.invoices), None)

    def set_status(
        self,
        invoice_id: str,
        status: str,
        *,
        received_amount: str | Decimal | None = None,
        tx_hash: str | None = None,
    ) -> None:
        """Set what GET /api/invoice/<id> reports (any status string; "paid", "cancelled", "expired", ...).

        ASSUMPTION: for "paid" without an explicit ``received_amount`` the full invoice amount counts as received, and
        a fake tx_hash is generated when none is given. Pass ``received_amount`` for partial/over payments.
        """
        inv = self.invoices[invoice_id]  # KeyError for an unknown invoice: a test bug
        inv["status"] = status
        if received_amount is not None:
            inv["received_amount"] = str(received_amount)
        elif status == "paid":
            inv["received_amount"] = inv["amount"]
        if tx_hash is not None:
            inv["tx_hash"] = tx_hash
        elif status == "paid" and inv["tx_hash"] is None:
            inv["tx_hash"] = _fake_tx_hash(inv["network"], invoice_id)

    def set_payout_status(self, reference_wp: str, status: str, *, tx_hash: str | None = None) -> None:
        """Set a payout's status (e.g. "completed", "failed") and optionally its tx_hash."""
        payout = self.payouts[reference_wp]
        payout["status"] = status
        if tx_hash is not None:
            payout["tx_hash"] = tx_hash

    def requests_to(self, path_contains: str) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``path_contains``."""
        return [r for r in self.requests if path_contains in r.path]

    # ------------------------------------------------------------------ webhooks

    def webhook_body(
        self,
        invoice_id: str,
        *,
        status: str = "paid",
        received_amount: str | Decimal | None = None,
        **overrides: Any,
    ) -> dict:
        """The documented (UNSIGNED) webhook payload for an invoice.

        Built from the stored invoice but independent of its status: a "paid" hint can be sent for an invoice the API
        still reports as pending. ``received_amount`` defaults to the invoice's received amount when something was
        received, else to the invoice amount. ``overrides`` replace or add keys last (e.g. ``currency="BNB"``).
        """
        inv = self.invoices[invoice_id]
        if received_amount is None:
            stored = inv.get("received_amount")
            received_amount = stored if stored not in (None, "0") else inv["amount"]
        body = {
            "status": status,
            "invoice_id": invoice_id,
            "amount": inv["amount"],
            "currency": inv["currency"],
            "tx_hash": inv["tx_hash"] or _fake_tx_hash(inv["network"], invoice_id),
            "received_amount": str(received_amount),
        }
        body.update(overrides)
        return body

    async def send_webhook(
        self,
        url: str,
        invoice_id: str,
        *,
        body: dict | str | bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 10.0,
        **kw: Any,
    ) -> tuple[int, str]:
        """POST the webhook JSON to ``url`` (full URL, e.g. ``fake.invoice(id)["callback_url"]``).

        ``kw`` is passed to ``webhook_body`` (status, received_amount, overrides). ``body`` replaces the payload
        entirely (a dict is sent as JSON, str/bytes raw, for malformed-body tests). No signature header is sent:
        the documented webhook is unsigned. Returns (HTTP status, response text).
        """
        if body is None:
            payload: dict | str | bytes = self.webhook_body(invoice_id, **kw)
        else:
            payload = body
        send_headers = {"Content-Type": "application/json"}
        send_headers.update(headers or {})
        data = json.dumps(payload) if isinstance(payload, dict) else payload
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.post(url, data=data, headers=send_headers) as resp,
        ):
            status, text = resp.status, await resp.text()
        self.webhooks_sent.append({"url": url, "body": payload, "status": status, "text": text})
        return status, text

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _record_inject_auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        text = await request.text() if request.can_read_body else ""
        try:
            parsed = json.loads(text) if text else None
        except ValueError:
            parsed = None
        self.requests.append(RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            json=parsed,
            text=text,
            headers=dict(request.headers),
        ))

        injected = await self._inject_fault(request)  # faults apply before the auth check
        if injected is not None:
            return injected

        # check-ip is public (it is used before the IP is allow-listed). Everything else needs both headers.
        # ASSUMPTION: the hyphenated `merchant-id` only (the older revision's `merchant_id` is refused), 401 with the
        # usual error envelope. The `Origin` header of the curl sample is not checked (its purpose is unknown).
        if not request.path.startswith("/api/public/") and (request.headers.get("x-api-key") != self.api_key
                or request.headers.get("merchant-id") != self.merchant_id):
            return _error(401, "Unauthorized")
        return await handler(request)

    @staticmethod
    async def _json_body(request: web.Request) -> dict | None:
        """The JSON object body with floats parsed as Decimal (exact), or None when it is not a JSON object."""
        try:
            body = json.loads(await request.text(), parse_float=Decimal)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    # ------------------------------------------------------------------ invoices

    async def _create_invoice(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        if body is None:
            return _error(400, "Invalid JSON body")  # ASSUMPTION

        # Documented required fields (older revision's table). ASSUMPTION: 400 + message for each violation.
        currency = body.get("currency")
        if not isinstance(currency, str) or not currency:
            return _error(400, "currency is required")
        network = body.get("network", "evm")  # documented default (older revision)
        if not isinstance(network, str) or not network:
            return _error(400, "network must be a string")
        customer_name = body.get("customer_name")
        if not isinstance(customer_name, str) or not customer_name.strip():
            return _error(400, "customer_name is required")
        emails = body.get("notification_emails")
        if not isinstance(emails, str) or not emails.strip():
            return _error(400, "notification_emails is required")
        callback_url = body.get("callback_url")
        if callback_url is not None and not isinstance(callback_url, str):
            return _error(400, "callback_url must be a string")

        # Documented: amounts are JSON numbers; `amount` is required unless `totalusd` is set, and with `totalusd`
        # the amount is computed. ASSUMPTION: strings/bools/non-positive values are refused with 400, and when both
        # are sent `totalusd` wins.
        price = self.prices.get(currency, Decimal(1))  # ASSUMPTION: unknown coins priced at 1 USD
        if "totalusd" in body:
            usd = _as_number(body["totalusd"])
            if usd is None:
                return _error(400, "totalusd must be a number")
            if usd <= 0:
                return _error(400, "totalusd must be positive")
            coin = usd / price
        elif "amount" in body:
            coin = _as_number(body["amount"])
            if coin is None:
                return _error(400, "amount must be a number")
            if coin <= 0:
                return _error(400, "amount must be positive")
            usd = coin * price
        else:
            return _error(400, "amount or totalusd is required")

        if (currency, network) not in self.pairs:
            return _error(400, f"Unsupported currency/network: {currency}/{network}")

        invoice_id = f"INV-{self._next_invoice}"
        self._next_invoice += 1
        now = int(time.time())
        inv = {
            "invoice_id": invoice_id,
            "address": fake_address(network, invoice_id),
            "amount": _fmt_coin(coin, currency),
            "totalusd": str(usd.quantize(_Q2)),
            "currency": currency,
            "network": network,
            "status": "pending",  # ASSUMPTION: initial status name undocumented
            "received_amount": "0",  # ASSUMPTION
            "tx_hash": None,
            "expires_at": now + self.invoice_lifetime,
            "payment_url": f"https://www.smartcloudpay.com/pay/{invoice_id}",
            "customer_name": customer_name,
            "notification_emails": emails,
            "callback_url": callback_url,
            "created_at": now,
        }
        self.invoices[invoice_id] = inv

        # ASSUMPTION: the real response is undocumented. Shapes selectable via create_shape.
        # The invoice answer echoes our callback URL, token included (seen by the security review, issue 8).
        fields = {k: inv[k] for k in ("invoice_id", "address", "amount", "totalusd", "currency", "network", "status",
                                      "expires_at", "payment_url", "callback_url")}
        if self.create_shape == "flat":
            flat = {"id": fields.pop("invoice_id"), **fields}
            return web.json_response({"success": True, **flat})
        if self.create_shape == "no_address":
            fields.pop("address")
            return web.json_response({"success": True, "data": fields})
        if self.create_shape != "data":
            raise ValueError(f"unknown create_shape {self.create_shape!r}; expected one of {CREATE_SHAPES}")
        return web.json_response({"success": True, "data": fields})

    async def _cancel_invoice(self, request: web.Request) -> web.Response:
        inv = self.invoices.get(request.match_info["invoice_id"])
        if inv is None:
            return _error(404, "Invoice not found")  # ASSUMPTION
        # Documented: cancels a *pending* invoice. ASSUMPTION: cancelling twice succeeds; any other status
        # (paid, expired, ...) is refused with 400 so clients must cope with "paid just before the deadline".
        if inv["status"] not in ("pending", "cancelled"):
            return _error(400, f"Invoice cannot be cancelled (status {inv['status']})")
        inv["status"] = "cancelled"
        return web.json_response({"success": True})  # ASSUMPTION: response undocumented

    async def _get_invoice(self, request: web.Request) -> web.Response:
        inv = self.invoices.get(request.match_info["invoice_id"])
        if inv is None:
            return _error(404, "Invoice not found")  # ASSUMPTION
        # ASSUMPTION: response fields and status field name are undocumented; status field selectable.
        data: dict[str, Any] = {"invoice_id": inv["invoice_id"]}
        if self.status_field is not None:
            data[self.status_field] = inv["status"]
        for key in ("amount", "received_amount", "currency", "network", "tx_hash", "totalusd", "address"):
            data[key] = inv[key]
        return web.json_response({"success": True, "data": data})

    # ------------------------------------------------------------------ payouts and utilities

    async def _payout_execute(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        if body is None:
            return _error(400, "Invalid JSON body")
        for key in ("recipient_address", "currency", "chain", "reference_wp"):
            if not isinstance(body.get(key), str) or not body[key]:
                return _error(400, f"{key} is required")
        amount = _as_number(body.get("amount"))
        if amount is None or amount <= 0:
            return _error(400, "amount must be a positive number")
        ref = body["reference_wp"]
        existing = self.payouts.get(ref)
        if existing is not None:
            # ASSUMPTION: a repeated reference_wp is idempotent and returns the existing payout unchanged.
            return web.json_response({"success": True, "data": dict(existing)})
        payout = {
            "reference_wp": ref,
            "status": "processing",  # ASSUMPTION
            "tx_hash": None,
            "recipient_address": body["recipient_address"],
            "amount": format(amount.normalize(), "f"),
            "currency": body["currency"],
            "chain": body["chain"],
            "created_at": int(time.time()),
        }
        self.payouts[ref] = payout
        return web.json_response({"success": True, "data": dict(payout)})

    async def _payout_status(self, request: web.Request) -> web.Response:
        body = await self._json_body(request)
        ref = body.get("reference_wp") if body else None
        if not isinstance(ref, str) or not ref:
            return _error(400, "reference_wp is required")
        payout = self.payouts.get(ref)
        if payout is None:
            return _error(404, "Payout not found")  # ASSUMPTION
        return web.json_response({"success": True, "data": dict(payout)})

    async def _payout_history(self, request: web.Request) -> web.Response:
        try:
            limit = int(request.query.get("limit", "20"))  # ASSUMPTION: default 20
        except ValueError:
            return _error(400, "limit must be an integer")
        newest_first = list(reversed(self.payouts.values()))
        # ASSUMPTION: newest first, list under "data".
        return web.json_response({"success": True, "data": [dict(p) for p in newest_first[:max(limit, 0)]]})

    async def _payout_wallets(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True, "data": [dict(w) for w in self.wallets]})  # ASSUMPTION: shape

    async def _balance_prepaid(self, request: web.Request) -> web.Response:
        return web.json_response({"success": True, "data": {"credits": self.prepaid_credits}})  # ASSUMPTION

    async def _balance_chain(self, request: web.Request) -> web.Response:
        network = request.query.get("network")
        currency = request.query.get("currency")
        if not network or not currency:
            return _error(400, "network and currency are required")
        # Documented example is upper case (BSC/BNB). ASSUMPTION: matched case-insensitively, echoed as sent.
        balance = self.chain_balances.get((network.upper(), currency.upper()), "0")
        return web.json_response({"success": True, "data": {"balance": balance, "network": network,
                                                            "currency": currency}})

    async def _check_ip(self, request: web.Request) -> web.Response:
        # Documented: {"your_ip": "..."}; no envelope, no auth.
        return web.json_response({"your_ip": self.your_ip or request.remote or "127.0.0.1"})
