"""The HTTP listener: gateway callbacks, /healthz, and (in webhook mode) Telegram's updates.

A thin adapter: it reads the request, hands the bytes to services.webhooks, and never answers 500.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.leader import Leadership
from bot.redis_state import RedisState
from services.gateways.base import Gateway
from services.gateways.registry import GATEWAYS
from services.gateways.capabilities import Capabilities
from services.store import Database
from services.store import deposits
from services.webhooks import CallbackInbox

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
TELEGRAM_WEBHOOK_PATH = "/telegram/webhook"
# Set by bot.app.run: whether this instance leads (sends the notifications), shown on /healthz.
LEADERSHIP = web.AppKey("leadership", Leadership)

# A slow client can't hold the listener: the body must arrive within BODY_READ_SECONDS (else 408), and a connection
# that has not sent a whole request's headers within KEEPALIVE_SECONDS of connecting, or idles that long between
# requests, is closed (aiohttp's keep-alive timer also runs before the first request). Header sizes are capped.
BODY_READ_SECONDS = 15.0
KEEPALIVE_SECONDS = 15.0
MAX_HEADERS = 64
MAX_HEADER_BYTES = 8190
HEALTH_WRITE_CHECK_SECONDS = 5.0  # /healthz is public: its write probe runs at most this often

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def make_runner(app: web.Application) -> web.AppRunner:
    """The listener's runner with the limits above (bot/app.py and the tests use this one)."""
    return web.AppRunner(app, access_log=None, keepalive_timeout=KEEPALIVE_SECONDS, max_headers=MAX_HEADERS,
                         max_line_size=MAX_HEADER_BYTES, max_field_size=MAX_HEADER_BYTES)


@web.middleware
async def read_body_in_time(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Read the whole body first, within BODY_READ_SECONDS; handlers then get it from aiohttp's cache."""
    if request.can_read_body:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.json_response({"error": "body too large"}, status=413)
        try:
            async with asyncio.timeout(BODY_READ_SECONDS):
                await request.read()
        except TimeoutError:
            log.info("listener: %s %s from %s: body not received within %ss (408)", request.method, request.path,
                     request.remote, BODY_READ_SECONDS)
            return web.json_response({"error": "request timeout"}, status=408, headers={"Connection": "close"})
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": "body too large"}, status=413)
        except web.RequestPayloadError:  # e.g. Content-Encoding: gzip over bytes that aren't
            return web.json_response({"error": "unreadable body"}, status=400)
    return await handler(request)


@web.middleware
async def never_500(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Whatever goes wrong inside is logged and answered 503 (try again), never 500 and never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except ConnectionError as exc:  # the client went away mid-request: routine on the internet, one line
        log.info("listener: %s %s from %s: client went away (%s)", request.method, request.path, request.remote,
                 type(exc).__name__)
        return web.json_response({"error": "client went away"}, status=400)
    except Exception:  # noqa: BLE001 - the listener must keep answering
        log.exception("listener: %s %s failed", request.method, request.path)
        return web.json_response({"error": "temporarily unavailable"}, status=503)


def build_web_app(db: Database, gateway: Gateway, inbox: CallbackInbox, *, redis: RedisState | None = None,
                  capabilities: Capabilities | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[never_500, read_body_in_time])
    writable = _WriteProbe(db)

    async def callback(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        body = await request.read()  # already read, in time, by read_body_in_time
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = await inbox.receive(source, body, headers=headers, peer=request.remote,
                                     token=request.query.get("token"))
        return web.json_response(answer.body, status=answer.status)

    async def healthz(request: web.Request) -> web.Response:
        database = await db.ping() and await writable.check()
        # Redis down is a failed check, not a detail: this instance can't take Telegram updates without it.
        shared_state = await redis.ping() if redis is not None else None
        ok = database and shared_state is not False
        pending = await deposits.count_pending(db.reader) if database else None
        health = gateway.health
        body: dict[str, Any] = {
            "ok": ok,
            "database": database,
            "redis": shared_state,
            "leader": leadership.is_leader if (leadership := request.app.get(LEADERSHIP)) else None,
            "gateway": {
                "name": gateway.name,
                "last_ok_seconds_ago": None if health.last_ok_at is None else int(time.time() - health.last_ok_at),
                "last_error_seconds_ago": None if health.last_error_at is None
                else int(time.time() - health.last_error_at),
                # A short status, never the gateway's own text: this endpoint needs no authentication.
                "last_error": health.last_error_kind,
                "capabilities": (capabilities or Capabilities.of(gateway)).names(),
            },
            "pending_deposits": pending,
        }
        return web.json_response(body, status=200 if ok else 503)

    # Every gateway that takes callbacks has its path; only the running one's answers (the others say 404).
    for spec in GATEWAYS:
        if spec.takes_callbacks:
            app.router.add_post(f"/webhooks/{{source:{spec.name}}}", callback)
    app.router.add_get("/healthz", healthz)
    return app


class _WriteProbe:
    """Whether the database still takes writes (a full disk or a read-only file fail here), cached briefly."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._checked_at = float("-inf")
        self._ok = False

    async def check(self) -> bool:
        now = time.monotonic()
        if now - self._checked_at >= HEALTH_WRITE_CHECK_SECONDS:
            self._ok = await self._db.can_write()
            self._checked_at = time.monotonic()
        return self._ok
