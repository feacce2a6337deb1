"""The operator API under /api/v1: a thin HTTP adapter over services.wallet, services.links and services.api_access.

It checks the key, the rate and the request's shape, calls one service function, and renders its answer. Every
error is {"error": {"code", "message"}}; whatever happens, the answer is never a 500.
"""
from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from aiohttp import web

from services.api_access import Access, ApiAccess, Caller
from services.links import EXTERNAL_ID_MAX, Linker
from services.operator_events import deposit_data, iso_time, usd
from services.store import DepositStatus, LedgerEntry, LedgerKind, User
from services.store.charges import Charge, Refund
from services.wallet import Wallet, WalletError, WalletProblem

log = logging.getLogger(__name__)

PREFIX = "/api/v1"
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.json"
DESCRIPTION_MAX = 200
REFERENCE_MAX = 255
PAGE_DEFAULT = 20
PAGE_MAX = 100
_AMOUNT_RE = re.compile(r"[0-9]{1,9}(?:\.[0-9]{1,2})?", re.ASCII)
_KEY_RE = re.compile(r"[\x20-\x7e]{1,255}", re.ASCII)
_ID_RE = re.compile(r"[0-9]{1,18}", re.ASCII)
_WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    """An answer other than success: its status, snake_case code and English message."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(code)
        self.status, self.code, self.message, self.headers, self.extra = status, code, message, headers, extra

    def response(self) -> web.Response:
        return web.json_response({"error": {"code": self.code, "message": self.message}, **self.extra},
                                 status=self.status, headers=self.headers)


_WALLET_ERRORS = {
    WalletProblem.USER_NOT_FOUND: (404, "No customer has this Telegram user id."),
    WalletProblem.CHARGE_NOT_FOUND: (404, "No charge has this id."),
    WalletProblem.INSUFFICIENT_FUNDS: (402, "The balance is too small for this charge; nothing was charged."),
    WalletProblem.IDEMPOTENCY_CONFLICT: (409, "This Idempotency-Key was used with a different request."),
    WalletProblem.REFUND_EXCEEDS_CHARGE: (422, "The refund is more than is left of the charge."),
}


class RateLimiter:
    """A token bucket per key: `rate` requests a second, bursts up to `rate`."""

    def __init__(self, rate: int) -> None:
        self._rate = rate
        self._buckets: dict[str, tuple[float, float]] = {}

    def wait_seconds(self, name: str) -> float:
        """0 when the request may go ahead (and counts it), else how long until one more would."""
        now = time.monotonic()
        tokens, at = self._buckets.get(name, (float(self._rate), now))
        tokens = min(float(self._rate), tokens + (now - at) * self._rate)
        if tokens >= 1:
            self._buckets[name] = (tokens - 1, now)
            return 0.0
        self._buckets[name] = (tokens, now)
        return (1 - tokens) / self._rate


# --- reading requests ---

def parse_amount(value: object) -> int:
    """Dollars as a JSON string ("2.00") or number, at most two decimals, above zero; else 422."""
    if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
        raise _bad_amount()
    text = str(value)
    if not _AMOUNT_RE.fullmatch(text):
        raise _bad_amount()
    whole, _, fraction = text.partition(".")
    cents = int(whole) * 100 + int(fraction.ljust(2, "0"))
    if cents <= 0:
        raise _bad_amount()
    return cents


def _bad_amount() -> ApiError:
    return ApiError(422, "invalid_amount", 'The amount must be a positive number of dollars with at most two '
                                           'decimals, written as a string such as "2.00".')


async def _json_object(request: web.Request, allowed: set[str]) -> dict[str, Any]:
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise ApiError(413, "body_too_large", "The request body is too large.") from None
    except (web.HTTPException, ValueError, OSError):
        raise ApiError(400, "invalid_json", "The request body could not be read.") from None
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise ApiError(400, "invalid_json", "The request body is not valid JSON.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The request body must be a JSON object.")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise ApiError(422, "invalid_field", f"Unknown field: {unknown[0][:40]!r}.")
    return body


def storable(text: str) -> bool:
    """Whether the database can hold this string: PostgreSQL's text takes no NUL and only valid UTF-8 (a JSON
    "\\ud800" or a %00 in the URL decodes to what it refuses). A string it can't hold names nothing we keep."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _charge_id(request: web.Request) -> str:
    charge_id = request.match_info["charge_id"]
    if not storable(charge_id):
        raise ApiError(404, "charge_not_found", "No charge has this id.")
    return charge_id


def _text(body: dict[str, Any], name: str, *, limit: int, required: bool = False, minimum: int = 0) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not minimum <= len(value) <= limit or not storable(value):
        raise ApiError(422, "invalid_field", f"{name} must be a string of {max(minimum, 0)} to {limit} characters.")
    return value


def _idempotency_key(request: web.Request) -> str:
    key = request.headers.get("Idempotency-Key")
    if key is None or key == "":
        raise ApiError(400, "idempotency_key_required", "Send an Idempotency-Key header with every charge and refund.")
    if not _KEY_RE.fullmatch(key):
        raise ApiError(400, "invalid_idempotency_key", "The Idempotency-Key must be 1 to 255 printable ASCII "
                                                       "characters.")
    return key


def _user_id(request: web.Request) -> int:
    text = request.match_info["user_id"]
    if not _ID_RE.fullmatch(text):
        raise ApiError(404, "user_not_found", "No customer has this Telegram user id.")
    return int(text)


def _page_args(request: web.Request) -> tuple[int, int | None]:
    limit_text = request.query.get("limit", str(PAGE_DEFAULT))
    if not _ID_RE.fullmatch(limit_text) or not 1 <= int(limit_text) <= PAGE_MAX:
        raise ApiError(422, "invalid_limit", f"limit must be a whole number from 1 to {PAGE_MAX}.")
    cursor = request.query.get("cursor")
    if cursor is not None and not _ID_RE.fullmatch(cursor):
        raise ApiError(422, "invalid_cursor", "cursor must be a next_cursor value from an earlier answer.")
    return int(limit_text), None if cursor is None else int(cursor)


# --- rendering answers ---

def user_json(user: User) -> dict[str, Any]:
    balance = user.live_balance_cents
    return {"user_id": user.id, "external_id": user.external_id, "username": user.username,
            "language": user.locale or user.telegram_lang, "balance": usd(balance), "balance_cents": balance,
            "currency": "USD", "created_at": iso_time(user.created_at)}


def _line_description(line: LedgerEntry) -> str:
    if line.kind is LedgerKind.DEPOSIT:
        return f"Deposit #{line.deposit_id}"
    if line.kind is LedgerKind.BONUS:
        return f"Bonus on deposit #{line.deposit_id}"
    return line.note or ""


def line_json(line: LedgerEntry, balance_after: int, reference: str | None) -> dict[str, Any]:
    return {"id": line.id, "kind": line.kind.value, "amount": usd(line.amount_cents),
            "amount_cents": line.amount_cents, "balance_after_cents": balance_after,
            "description": _line_description(line), "reference": reference, "deposit_id": line.deposit_id,
            "charge_id": line.charge_id, "created_at": iso_time(line.created_at)}


def charge_json(charge: Charge) -> dict[str, Any]:
    return {"charge_id": charge.id, "amount": usd(charge.amount_cents), "amount_cents": charge.amount_cents,
            "balance": usd(charge.balance_after_cents), "balance_cents": charge.balance_after_cents,
            "description": charge.description, "reference": charge.reference,
            "created_at": iso_time(charge.created_at)}


def refund_json(refund: Refund) -> dict[str, Any]:
    return {"refund_id": refund.id, "charge_id": refund.charge_id, "amount": usd(refund.amount_cents),
            "amount_cents": refund.amount_cents, "balance": usd(refund.balance_after_cents),
            "balance_cents": refund.balance_after_cents, "created_at": iso_time(refund.created_at)}


def _wallet_error(exc: WalletError) -> ApiError:
    status, message = _WALLET_ERRORS[exc.problem]
    extra: dict[str, Any] = {}
    if exc.balance_cents is not None:
        extra = {"balance": usd(exc.balance_cents), "balance_cents": exc.balance_cents}
    return ApiError(status, exc.problem.value, message, **extra)


@dataclass
class OperatorApi:
    """Everything the API's handlers need; `bot_username` is filled in once the bot knows its name."""

    access: ApiAccess
    wallet: Wallet
    linker: Linker
    rate_limit: int
    bot_username: Callable[[], Awaitable[str]] | None = None

    def __post_init__(self) -> None:
        self._limiter = RateLimiter(self.rate_limit)
        self._openapi: bytes | None = None

    # --- the gate every /api/v1 request passes ---

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not (request.path == PREFIX or request.path.startswith(PREFIX + "/")):
            return await handler(request)
        try:
            return await self._guarded(request, handler)
        except ApiError as exc:
            return exc.response()
        except Exception:  # noqa: BLE001 - never a 500, never a traceback to the caller
            log.exception("api: %s %s failed", request.method, request.path)
            return ApiError(503, "temporarily_unavailable", "Something went wrong on our side; try again.",
                            headers={"Retry-After": "1"}).response()

    async def _guarded(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        access, caller = await self.access.check(_bearer(request))
        if access is Access.OFF:
            raise ApiError(404, "not_found", "The operator API is off: create a key with "
                                             "`python -m bot api-keys create NAME` to turn it on.")
        if request.path != PREFIX + "/openapi.json":
            if caller is None:
                raise ApiError(401, "unauthorized", "Send a valid API key as 'Authorization: Bearer <key>'.")
            wait = self._limiter.wait_seconds(caller.name)
            if wait > 0:
                raise ApiError(429, "rate_limited", "Too many requests with this key; slow down.",
                               headers={"Retry-After": str(max(1, math.ceil(wait)))})
            if request.method in _WRITE_METHODS and caller.read_only:
                raise ApiError(403, "forbidden", "This key is read-only.")
        try:
            return await handler(request)
        except web.HTTPNotFound:
            raise ApiError(404, "not_found", "There is no such endpoint.") from None
        except web.HTTPMethodNotAllowed as exc:
            raise ApiError(405, "method_not_allowed", "This endpoint does not take this method.",
                           headers={"Allow": ", ".join(sorted(exc.allowed_methods))}) from None
        except web.HTTPException as exc:
            if exc.status >= 500:
                raise
            raise ApiError(exc.status, "bad_request", "The request could not be read.") from None

    # --- endpoints ---

    async def openapi(self, request: web.Request) -> web.Response:
        if self._openapi is None:
            self._openapi = OPENAPI_PATH.read_bytes()
        return web.Response(body=self._openapi, content_type="application/json")

    async def get_user(self, request: web.Request) -> web.Response:
        user = await self.wallet.user(_user_id(request))
        if user is None:
            raise ApiError(404, "user_not_found", "No customer has this Telegram user id.")
        return web.json_response(user_json(user))

    async def find_user(self, request: web.Request) -> web.Response:
        external_id = request.query.get("external_id")
        if external_id is None or not 1 <= len(external_id) <= EXTERNAL_ID_MAX:
            raise ApiError(422, "invalid_field", f"external_id must be given, 1 to {EXTERNAL_ID_MAX} characters.")
        user = await self.wallet.user_by_external_id(external_id) if storable(external_id) else None
        if user is None:
            raise ApiError(404, "user_not_found", "No customer is bound to this external_id.")
        return web.json_response(user_json(user))

    async def user_ledger(self, request: web.Request) -> web.Response:
        user_id = _user_id(request)
        limit, cursor = _page_args(request)
        if await self.wallet.user(user_id) is None:
            raise ApiError(404, "user_not_found", "No customer has this Telegram user id.")
        page = await self.wallet.ledger_page(user_id, limit=limit + 1, before_id=cursor)
        more = len(page) > limit
        page = page[:limit]
        return web.json_response({"data": [line_json(*item) for item in page],
                                  "next_cursor": str(page[-1][0].id) if more else None})

    async def create_charge(self, request: web.Request) -> web.Response:
        key = _idempotency_key(request)
        user_id = _user_id(request)
        body = await _json_object(request, {"amount", "description", "reference"})
        cents = parse_amount(body.get("amount"))
        description = _text(body, "description", limit=DESCRIPTION_MAX) or ""
        reference = _text(body, "reference", limit=REFERENCE_MAX)
        try:
            result = await self.wallet.charge(user_id, cents, description=description, reference=reference,
                                              idempotency_key=key)
        except WalletError as exc:
            raise _wallet_error(exc) from None
        headers = {"Idempotent-Replayed": "true"} if result.replayed else None
        return web.json_response(charge_json(result.charge), status=201, headers=headers)

    async def create_refund(self, request: web.Request) -> web.Response:
        key = _idempotency_key(request)
        charge_id = _charge_id(request)
        body = await _json_object(request, {"amount"})
        cents = parse_amount(body["amount"]) if body.get("amount") is not None else None
        try:
            result = await self.wallet.refund(charge_id, cents, idempotency_key=key)
        except WalletError as exc:
            raise _wallet_error(exc) from None
        headers = {"Idempotent-Replayed": "true"} if result.replayed else None
        return web.json_response(refund_json(result.refund), status=201, headers=headers)

    async def get_charge(self, request: web.Request) -> web.Response:
        found = await self.wallet.charge_details(_charge_id(request))
        if found is None:
            raise ApiError(404, "charge_not_found", "No charge has this id.")
        charge, refunds = found
        return web.json_response({**charge_json(charge), "user_id": charge.user_id,
                                  "refunded": usd(charge.refunded_cents), "refunded_cents": charge.refunded_cents,
                                  "refunds": [refund_json(r) for r in refunds]})

    async def create_link(self, request: web.Request) -> web.Response:
        body = await _json_object(request, {"external_id"})
        external_id = _text(body, "external_id", limit=EXTERNAL_ID_MAX, required=True, minimum=1)
        assert external_id is not None
        if self.bot_username is None:
            raise ApiError(503, "temporarily_unavailable", "The bot has not started yet; try again.",
                           headers={"Retry-After": "5"})
        username = await self.bot_username()
        link = await self.linker.create(external_id)
        return web.json_response({"url": f"https://t.me/{username}?start={link.token}", "token": link.token,
                                  "expires_at": iso_time(link.expires_at)}, status=201)

    async def list_deposits(self, request: web.Request) -> web.Response:
        limit, cursor = _page_args(request)
        status = request.query.get("status")
        if status is not None and status not in {s.value for s in DepositStatus}:
            raise ApiError(422, "invalid_status", "status must be one of: "
                                                  + ", ".join(s.value for s in DepositStatus) + ".")
        user_text = request.query.get("user_id")
        if user_text is not None and not (_ID_RE.fullmatch(user_text) and int(user_text) > 0):
            raise ApiError(422, "invalid_field", "user_id must be a Telegram user id.")
        items = await self.wallet.deposits_page(status=status, user_id=None if user_text is None else int(user_text),
                                                limit=limit + 1, before_id=cursor)
        more = len(items) > limit
        items = items[:limit]
        return web.json_response({"data": [deposit_data(d) for d in items],
                                  "next_cursor": str(items[-1].id) if more else None})

    def install(self, app: web.Application) -> None:
        app.middlewares.append(self.middleware)
        app.router.add_get(f"{PREFIX}/openapi.json", self.openapi)
        app.router.add_get(f"{PREFIX}/users", self.find_user)
        app.router.add_get(f"{PREFIX}/users/{{user_id}}", self.get_user)
        app.router.add_get(f"{PREFIX}/users/{{user_id}}/ledger", self.user_ledger)
        app.router.add_post(f"{PREFIX}/users/{{user_id}}/charges", self.create_charge)
        app.router.add_post(f"{PREFIX}/charges/{{charge_id}}/refunds", self.create_refund)
        app.router.add_get(f"{PREFIX}/charges/{{charge_id}}", self.get_charge)
        app.router.add_post(f"{PREFIX}/links", self.create_link)
        app.router.add_get(f"{PREFIX}/deposits", self.list_deposits)


def _bearer(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


__all__ = ["Caller", "OperatorApi", "PREFIX", "RateLimiter", "parse_amount"]
