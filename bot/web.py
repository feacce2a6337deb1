"""The HTTP listener: gateway callbacks, /healthz, and (in webhook mode) Telegram's updates.

A thin adapter: it reads the request, hands the bytes to services.webhooks, and never answers 500.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from bot.redis_state import RedisState
from services.gateways.base import Gateway
from services.store import Database
from services.store import deposits
from services.webhooks import CallbackInbox

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
CALLBACK_SOURCES = ("cryptomus", "smartcloudpay")
TELEGRAM_WEBHOOK_PATH = "/telegram/webhook"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def never_500(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Whatever goes wrong inside is logged and answered 503 (try again), never 500 and never a traceback."""
    try:
        return await handler(request)
    except web.HTTPException:
        raise
    except Exception:  # noqa: BLE001 - the listener must keep answering
        log.exception("listener: %s %s failed", request.method, request.path)
        return web.json_response({"error": "temporarily unavailable"}, status=503)


def build_web_app(db: Database, gateway: Gateway, inbox: CallbackInbox, *,
                  redis: RedisState | None = None) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[never_500])

    async def callback(request: web.Request) -> web.Response:
        source = request.match_info["source"]
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            return web.json_response({"error": "body too large"}, status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response({"error": "body too large"}, status=413)
        except web.RequestPayloadError:  # e.g. Content-Encoding: gzip over bytes that aren't
            return web.json_response({"error": "unreadable body"}, status=400)
        headers = {name.lower(): value for name, value in request.headers.items()}
        answer = await inbox.receive(source, body, headers=headers, peer=request.remote,
                                     token=request.query.get("token"))
        return web.json_response(answer.body, status=answer.status)

    async def healthz(request: web.Request) -> web.Response:
        database = await db.ping()
        # Redis down is a failed check, not a detail: this instance can't take Telegram updates without it.
        shared_state = await redis.ping() if redis is not None else None
        ok = database and shared_state is not False
        pending = await deposits.count_pending(db.reader) if database else None
        health = gateway.health
        body = {
            "ok": ok,
            "database": database,
            "redis": shared_state,
            "gateway": {
                "name": gateway.name,
                "last_ok_seconds_ago": None if health.last_ok_at is None else int(time.time() - health.last_ok_at),
                "last_error_seconds_ago": None if health.last_error_at is None
                else int(time.time() - health.last_error_at),
                "last_error": health.last_error,
            },
            "pending_deposits": pending,
        }
        return web.json_response(body, status=200 if ok else 503)

    for source in CALLBACK_SOURCES:
        app.router.add_post(f"/webhooks/{{source:{source}}}", callback)
    app.router.add_get("/healthz", healthz)
    return app
