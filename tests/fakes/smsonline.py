"""Fake of the SMSOnline V3 customer API (plus the V2 ``checkout/crypto`` call) for tests.

It follows the documented contract (see ``payment-apis.md`` section 1 and the apidog pages it cites) exactly where
that contract is documented: paths, the ``{"ok": true, "body": ...}`` envelope (``{"error": false, ...}`` for V2),
the direct-wallet field names and types, the currency -> network matrix, and the HTTP status codes of the failures.
Wherever the docs are silent the fake makes an explicit assumption, marked ``ASSUMPTION`` in the comments below, and
exposes a knob where tests may need to vary it (notably the undocumented name of the transaction status field).

Usage::

    async with FakeSMSOnline(coupons={"SAVE10": {"percentage": 10}}) as fake:
        # the bot's SMSONLINE_API_URL = fake.base_url (no /v3 suffix; clients append /v3/...)
        ...
        fake.set_status(fake.last_order_id(), "paid")

The fake never writes the API key to a log (the aiohttp access log is disabled, because GET calls carry
``?apiKey=`` in the query) and never echoes it in a response. ``requests`` does keep it, so tests can assert on it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer, Fault, fake_address

__all__ = ["FakeSMSOnline", "RecordedRequest", "NETWORKS", "FINAL_STATUSES", "PAID_STATUSES", "FAKE_PRICES_USD"]

# Documented matrix (V3 "Get direct wallet" page), upper case as the doc sends it.
NETWORKS: dict[str, tuple[str, ...]] = {
    "USDT": ("BSC", "TRON", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE", "SOL", "TON"),
    "BTC": ("BTC",),
    "LTC": ("LTC",),
    "TRX": ("TRON",),
    "ETH": ("ETH",),
    "XMR": ("XMR",),
    "POL": ("POLYGON", "ETH"),
    "BNB": ("BSC",),
    "USDC": ("BSC", "ETH", "POLYGON", "ARBITRUM", "AVALANCHE"),
    "SOL": ("SOL",),
    "DASH": ("DASH",),
    "DOGE": ("DOGE",),
    "TON": ("TON",),
    "BCH": ("BCH",),
    "AVAX": ("AVALANCHE",),
    "DAI": ("BSC", "POLYGON", "ETH"),
}

STABLECOINS = frozenset({"USDT", "USDC", "DAI"})

# ASSUMPTION: fixed fake prices (USD per coin) used to derive amountInCrypto for non-stablecoins.
FAKE_PRICES_USD: dict[str, Decimal] = {
    "BTC": Decimal("60000"),
    "ETH": Decimal("3000"),
    "LTC": Decimal("80"),
    "TRX": Decimal("0.12"),
    "XMR": Decimal("150"),
    "POL": Decimal("0.5"),
    "BNB": Decimal("600"),
    "SOL": Decimal("150"),
    "DASH": Decimal("30"),
    "DOGE": Decimal("0.15"),
    "TON": Decimal("5"),
    "BCH": Decimal("400"),
    "AVAX": Decimal("30"),
}

# Cryptomus status strings (reference section 2.7); SMSOnline's own status set is undocumented.
FINAL_STATUSES = frozenset({"paid", "paid_over", "wrong_amount", "cancel", "fail", "system_fail", "refund_paid"})
PAID_STATUSES = frozenset({"paid", "paid_over"})

# Error labels from the docs. The failure body shape is undocumented.
ERR_CURRENCY = "Non-acceptable Currency"
ERR_NETWORK = "Non-acceptable Network"
ERR_AUTH = "User-verification Failed"
ERR_COUPON = "Invalid, or expired Coupon"
ERR_AMOUNT = "Invalid amount"  # ASSUMPTION: no error is documented for a malformed amount.
ERR_NOT_FOUND = "Transaction not found"  # ASSUMPTION: the answer for an unknown order_id is undocumented.

# ASSUMPTION: the direct-wallet {amount} is USD with up to 2 decimals (sample path uses 5.15).
_USD_AMOUNT_RE = re.compile(r"^\d+(\.\d{1,2})?$")
# The invoice {amount} (V3) and V2 `amount` are declared integers.
_INT_AMOUNT_RE = re.compile(r"^\d+$")

_DIRECT_FIELDS = ("to_address", "currency", "network", "amountInUSD", "amountInCrypto", "expire_at", "url", "order_id")
# ASSUMPTION: fake account-level tiers, copied from the balance example.
_DISCOUNT_RATES: list[list[Any]] = [[8000, 0.8, "-20%"], [6000, 0.85, "-15%"], [4000, 0.9, "-10%"],
                                    [2000, 0.95, "-5%"], [0, 1, "0%"]]
_TS_FMT = "%Y-%m-%d %H:%M:%S"  # format of the coupons' issuedAt/expiredAt (time zone undocumented; UTC here)


@dataclass
class RecordedRequest:
    """One request as the fake received it (recorded before any fault injection)."""

    method: str
    path: str
    query: dict[str, str]
    json: Any  # parsed JSON body, or None when the body is empty or not JSON
    text: str  # raw body text
    headers: dict[str, str]


def _v3_error(status: int, message: str) -> web.Response:
    # ASSUMPTION: failure body shape is undocumented; a third-party script reads `errorMessage` when ok is false.
    return web.json_response({"ok": False, "errorMessage": message}, status=status)


class FakeSMSOnline(FakeServer):
    """In-process HTTP fake of the SMSOnline V3 customer API (and the V2 checkout/crypto call)."""

    def __init__(
        self,
        user_id: str = "operator-1",
        api_key: str = "test-api-key",
        coupons: dict[str, dict] | None = None,
    ) -> None:
        self.user_id = user_id
        self.api_key = api_key
        # code -> {"percentage": 10, "status": "issued", "expired": False}; optional keys: "timing", "targetPay",
        # "issuedAt", "expiredAt" (override the generated values in the coupons listing).
        self.coupons: dict[str, dict] = dict(coupons or {})
        self.deposits: dict[str, dict] = {}  # order_id -> deposit (insertion-ordered)
        self.invoices: list[dict] = []  # hosted-page invoices: V3 cryptomus/pay4bit and V2 checkout/crypto
        self.requests: list[RecordedRequest] = []

        # Knobs for the undocumented parts of "Get transaction status".
        self.status_field: str | None = "status"  # or "payment_status", or None to omit the field entirely
        self.include_is_final: bool = True

        # Account state for GET /balance (cents, as the docs' example suggests).
        self.balance: int = 500
        self.total_charges: int = 500
        self.stripe_id: str = "cus_fake000000"
        self.vip_support: bool = False
        self.vip_telegram: str = ""
        # ASSUMPTION: a deposit reaching paid/paid_over adds its amountInUSD (in cents) to balance and
        # totalCharges once. Set to False to keep the balance fixed.
        self.credit_balance_on_paid: bool = True
        # Fields to leave out of GET /balance (all are marked required, but an operator's screen must survive it).
        self.omit_balance_fields: set[str] = set()

        self.deposit_lifetime: int = 3600  # seconds until expire_at; reference: address valid for one hour
        self.base_url: str | None = None

        self._faults: list[Fault] = []
        self._runner: web.AppRunner | None = None
        self._closing = asyncio.Event()
        self._credited: set[str] = set()

    # ------------------------------------------------------------------ lifecycle

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._record_and_inject])
        v3 = "/v3/customers/{user_id}"
        app.router.add_put(v3 + "/cryptomus/direct/{currency}/{network}/{amount}", self._direct_wallet)
        app.router.add_get(v3 + "/cryptomus/transaction/{order_id}", self._transaction)
        app.router.add_put(v3 + "/cryptomus/invoice/{amount}", self._cryptomus_invoice)
        app.router.add_put(v3 + "/pay4bit/invoice/{amount}", self._pay4bit_invoice)
        app.router.add_get(v3 + "/balance", self._balance)
        app.router.add_get(v3 + "/coupons", self._coupons)
        # V2 lives on another host (api.smsonline.cloud) in reality; the fake serves it from the same base_url.
        app.router.add_get("/cs/checkout/crypto", self._v2_checkout_crypto)
        app.router.add_get(v3 + "/payments", self._payments)
        return app

    # ------------------------------------------------------------------ test controls

    def set_status(self, order_id: str, status: str, **extra: Any) -> None:
        """Set the payment status of a deposit (any string; Cryptomus values such as "paid", "cancel").

        `extra` keys are added to (or replace) what Get transaction status answers, e.g. payment_amount_usd="7.00".
        """
        deposit = self.deposits[order_id]  # KeyError for an unknown order: a test bug
        deposit["status"] = status
        deposit.setdefault("extra", {}).update(extra)
        if status in PAID_STATUSES and self.credit_balance_on_paid and order_id not in self._credited:
            self._credited.add(order_id)
            cents = int(Decimal(deposit["amountInUSD"]) * 100)
            self.balance += cents
            self.total_charges += cents

    def set_invoice_status(self, url_or_pay_id: str, status: str, *, amount: int | None = None) -> None:
        """Change a hosted-page invoice's status (and optionally its history amount) as Get invoices shows it."""
        for invoice in self.invoices:
            if url_or_pay_id in (invoice["url"], invoice["url"].rsplit("/", 1)[-1]):
                invoice["status"] = status
                if amount is not None:
                    invoice["history_amount"] = amount
                return
        raise KeyError(url_or_pay_id)

    def last_order_id(self) -> str | None:
        """The order_id of the most recently created deposit, or None when there is none."""
        return next(reversed(self.deposits), None)

    def requests_to(self, path_contains: str) -> list[RecordedRequest]:
        """Recorded requests whose path contains ``path_contains``."""
        return [r for r in self.requests if path_contains in r.path]

    # ------------------------------------------------------------------ middleware

    @web.middleware
    async def _record_and_inject(self, request: web.Request, handler: Any) -> web.StreamResponse:
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

        injected = await self._inject_fault(request)
        if injected is not None:
            return injected
        return await handler(request)

    # ------------------------------------------------------------------ helpers

    async def _body_auth(self, request: web.Request) -> dict | None:
        """The JSON body of a V3 PUT if it authenticates, else None (-> 401)."""
        if request.match_info["user_id"] != self.user_id:
            return None
        try:
            body = json.loads(await request.text())
        except ValueError:
            return None
        if not isinstance(body, dict) or body.get("apiKey") != self.api_key:
            return None
        return body

    def _query_auth(self, request: web.Request) -> bool:
        return request.match_info["user_id"] == self.user_id and request.query.get("apiKey") == self.api_key

    def _coupon_valid(self, code: str) -> bool:
        coupon = self.coupons.get(code)
        return (
            coupon is not None
            and coupon.get("status", "issued") == "issued"
            and not coupon.get("expired", False)
        )

    @staticmethod
    def _payment_url() -> str:
        return f"https://pay.cryptomus.com/pay/{uuid.uuid4()}"

    # ------------------------------------------------------------------ V3 handlers

    async def _direct_wallet(self, request: web.Request) -> web.Response:
        body = await self._body_auth(request)
        if body is None:
            return _v3_error(401, ERR_AUTH)
        # ASSUMPTION: case sensitivity is undocumented; the fake accepts only the upper-case codes the doc sends.
        currency = request.match_info["currency"]
        network = request.match_info["network"]
        amount = request.match_info["amount"]
        if currency not in NETWORKS:
            return _v3_error(400, ERR_CURRENCY)
        if network not in NETWORKS[currency]:
            return _v3_error(400, ERR_NETWORK)
        if not _USD_AMOUNT_RE.match(amount):
            return _v3_error(400, ERR_AMOUNT)  # ASSUMPTION: status and label for a malformed amount
        coupon_code = body.get("couponCode")
        if coupon_code is not None and not self._coupon_valid(coupon_code):
            return _v3_error(500, ERR_COUPON)

        # ASSUMPTION: the deposit is for the requested USD amount; a coupon does not change the amounts (the docs'
        # example numbers disagree with each other, so no pricing rule is modelled) and is not consumed.
        usd = Decimal(amount).quantize(Decimal("0.01"))
        if currency in STABLECOINS:
            crypto = str(usd)
        else:
            crypto = str((usd / FAKE_PRICES_USD[currency]).quantize(Decimal("0.00000001")))
        order_id = str(uuid.uuid4())
        wallet = {
            "to_address": fake_address(network, order_id),
            "currency": currency,
            "network": network.lower(),  # documented: the network comes back lower case
            "amountInUSD": str(usd),
            "amountInCrypto": crypto,
            "expire_at": int(time.time()) + self.deposit_lifetime,
            "url": self._payment_url(),
            "order_id": order_id,
        }
        self.deposits[order_id] = {**wallet, "status": "check", "couponCode": coupon_code, "amount": amount}
        return web.json_response({"ok": True, "body": wallet})

    async def _transaction(self, request: web.Request) -> web.Response:
        if not self._query_auth(request):
            return _v3_error(401, ERR_AUTH)
        deposit = self.deposits.get(request.match_info["order_id"])
        if deposit is None:
            return _v3_error(404, ERR_NOT_FOUND)
        # Documented: the body repeats the direct-wallet fields. Everything after them is undocumented.
        out: dict[str, Any] = {k: deposit[k] for k in _DIRECT_FIELDS}
        status = deposit["status"]
        if self.status_field is not None:
            out[self.status_field] = status  # ASSUMPTION: field name selectable by tests
        if self.include_is_final:
            out["is_final"] = status in FINAL_STATUSES  # ASSUMPTION: Cryptomus-style finality flag
        if status in PAID_STATUSES:
            out["payment_amount_usd"] = deposit["amountInUSD"]  # ASSUMPTION: Cryptomus-style extra field
        out.update(deposit.get("extra", {}))
        return web.json_response({"ok": True, "body": out})

    async def _cryptomus_invoice(self, request: web.Request) -> web.Response:
        body = await self._body_auth(request)
        if body is None:
            return _v3_error(401, ERR_AUTH)
        amount = request.match_info["amount"]
        if not _INT_AMOUNT_RE.match(amount):
            return _v3_error(400, ERR_AMOUNT)  # documented type is integer; the error answer is an ASSUMPTION
        coupon_code = body.get("couponCode")
        # ASSUMPTION: errors for this endpoint are not listed; the coupon check mirrors the direct wallet.
        if coupon_code is not None and not self._coupon_valid(coupon_code):
            return _v3_error(500, ERR_COUPON)
        url = self._payment_url()
        self.invoices.append({"kind": "cryptomus", "amount": int(amount), "couponCode": coupon_code, "url": url})
        return web.json_response({"ok": True, "body": url})

    async def _pay4bit_invoice(self, request: web.Request) -> web.Response:
        body = await self._body_auth(request)
        if body is None:
            return _v3_error(401, ERR_AUTH)
        amount = request.match_info["amount"]
        if not _INT_AMOUNT_RE.match(amount):
            return _v3_error(400, ERR_AMOUNT)  # ASSUMPTION, as for the cryptomus invoice
        # Fake signed URL (real one signs currency, amount and user id); never contains the API key.
        sig = hashlib.sha256(f"{self.user_id}:{amount}:USD".encode()).hexdigest()
        url = f"https://api.pay4bit.net/pay?public_key=fake&account={self.user_id}&sum={amount}&currency=USD&sign={sig}"
        self.invoices.append({"kind": "pay4bit", "amount": int(amount), "couponCode": None, "url": url})
        return web.json_response({"ok": True, "body": url})

    async def _payments(self, request: web.Request) -> web.Response:
        """Get invoices (top-up history), in the documented item shape.

        ASSUMPTIONS: payId is the uuid at the end of a Cryptomus payment URL (undocumented; the bot relies on an
        exact match and credits nothing otherwise); amount is USD cents; Pay4bit items carry an opaque payId.
        """
        if not self._query_auth(request):
            return _v3_error(401, ERR_AUTH)
        items = []
        for n, invoice in enumerate(self.invoices):
            cents = invoice["amount"] if invoice["kind"] == "v2_crypto" else invoice["amount"] * 100
            pay_id = (invoice["url"].rsplit("/", 1)[-1] if invoice["kind"] != "pay4bit"
                      else hashlib.sha256(invoice["url"].encode()).hexdigest()[:16])
            items.append({"method": "crypto" if invoice["kind"] != "pay4bit" else "card", "sesid": f"ses-{n}",
                          "payId": pay_id, "amount": invoice.get("history_amount", cents),
                          "created": "2025-05-15 18:37:30", "expires_at": "2025-05-15 19:37:30",
                          "status": invoice.get("status", "check"), "userId": self.user_id})
        return web.json_response({"ok": True, "body": items})

    async def _balance(self, request: web.Request) -> web.Response:
        if not self._query_auth(request):
            return _v3_error(401, ERR_AUTH)
        # ASSUMPTION: currentDiscountRate is the label of the highest tier reached by totalCharges.
        rate = next(label for threshold, _, label in _DISCOUNT_RATES if self.total_charges >= threshold)
        body = {
            "userId": self.user_id,
            "stripeId": self.stripe_id,
            "cryptomusId": None,
            "status": None,
            "lang": None,
            "referral": None,
            "balance": self.balance,
            "totalCharges": str(self.total_charges),
            "couponCount": sum(1 for code in self.coupons if self._coupon_valid(code)),
            "currentDiscountRate": rate,
            "vipSupport": self.vip_support,
            "vipTelegram": self.vip_telegram,
            "discountRates": _DISCOUNT_RATES,
        }
        return web.json_response({"ok": True, "body": {k: v for k, v in body.items()
                                                       if k not in self.omit_balance_fields}})

    async def _coupons(self, request: web.Request) -> web.Response:
        if not self._query_auth(request):
            return _v3_error(401, ERR_AUTH)
        now = datetime.now(timezone.utc).replace(microsecond=0)
        codes = []
        for code, c in self.coupons.items():
            timing = int(c.get("timing", 30))
            if c.get("expired", False):
                issued, expired = now - timedelta(days=timing + 1), now - timedelta(days=1)
            else:
                issued, expired = now - timedelta(days=1), now - timedelta(days=1) + timedelta(days=timing)
            codes.append({
                "userId": self.user_id,
                "code": code,
                "issuedAt": c.get("issuedAt", issued.strftime(_TS_FMT)),
                "expiredAt": c.get("expiredAt", expired.strftime(_TS_FMT)),
                "status": c.get("status", "issued"),
                "timing": timing,
                "percentage": c.get("percentage", 10),
                "targetPay": c.get("targetPay", "crypto"),
            })
        # ASSUMPTION: the meaning of totalReceived is undocumented; the fake reports the number of coupons.
        return web.json_response({"ok": True, "body": {"totalReceived": len(codes), "codes": codes}})

    # ------------------------------------------------------------------ V2 handler

    async def _v2_checkout_crypto(self, request: web.Request) -> web.Response:
        q = request.query
        if q.get("userId") != self.user_id or q.get("key") != self.api_key:
            # Documented: 401 Unauthorized. ASSUMPTION: body shape (V2 envelope uses `error`).
            return web.json_response({"error": True, "body": "Unauthorized"}, status=401)
        amount = q.get("amount", "")
        if not _INT_AMOUNT_RE.match(amount):
            # ASSUMPTION: undocumented answer for a missing/non-integer amount (documented: integer USD cents).
            return web.json_response({"error": True, "body": "Invalid amount"}, status=400)
        url = self._payment_url()
        self.invoices.append({"kind": "v2_crypto", "amount": int(amount), "couponCode": None, "url": url})
        return web.json_response({"error": False, "body": url})
