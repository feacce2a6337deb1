"""The operator API over real HTTP: the bot's real listener on 127.0.0.1, wired by build_application."""
from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from services.store import Database, LedgerKind
from services.store import ledger, users
from tests.fakes.bot_api import FakeBotAPI
from tests.harness import Harness

API_KEY = "tk_test-operator-key-0123456789abcdef"


async def give(db: Database, user_id: int, cents: int, *, test: bool = False, username: str | None = None) -> None:
    """A customer with `cents` of live (or test) money, as a staff credit (or a sandbox payment) would leave them."""
    async with db.transaction() as tx:
        await users.upsert(tx, user_id, username, f"User {user_id}", "en")
        if cents:
            await ledger.append(tx, user_id=user_id, amount_cents=cents, kind=LedgerKind.ADJUSTMENT, test=test,
                                idempotency_key=f"test-give:{user_id}:{cents}:{test}:{id(object())}")


class Api:
    def __init__(self, harness: Harness, base: str, session: aiohttp.ClientSession) -> None:
        self.h = harness
        self.base = base
        self.session = session

    @property
    def db(self) -> Database:
        return self.h.app.db

    async def call(self, method: str, path: str, *, json_body: Any = None, data: bytes | str | None = None,
                   key: str | None = API_KEY, idempotency_key: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, Any, dict[str, str]]:
        sent = dict(headers or {})
        if key is not None:
            sent["Authorization"] = f"Bearer {key}"
        if idempotency_key is not None:
            sent["Idempotency-Key"] = idempotency_key
        async with self.session.request(method, self.base + path, json=json_body, data=data,
                                        headers=sent) as answer:
            raw = await answer.read()
            try:
                body = await answer.json(content_type=None) if raw else None
            except ValueError:
                body = raw
            return answer.status, body, dict(answer.headers)

    async def charge(self, user_id: int, amount: Any, key: str, **extra: Any) -> tuple[int, Any, dict[str, str]]:
        return await self.call("POST", f"/api/v1/users/{user_id}/charges", json_body={"amount": amount, **extra},
                               idempotency_key=key)


@asynccontextmanager
async def listening(app: web.Application) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        await runner.cleanup()
        sock.close()


@asynccontextmanager
async def operator_api(fake: FakeBotAPI, database: Path | str, **env: str) -> AsyncIterator[Api]:
    """The bot on `database` (a SQLite file, or a DATABASE_URL: the `database_url` fixture, either engine)."""
    env.setdefault("OPERATOR_API_KEY", API_KEY)
    harness = await Harness.start(fake, database, **env)
    harness.app.operator_api.bot_username = lambda: _username(harness)
    try:
        async with listening(harness.app.web_app) as base, aiohttp.ClientSession() as session:
            yield Api(harness, base, session)
    finally:
        await harness.close()


async def _username(harness: Harness) -> str:
    me = await harness.bot.me()
    return me.username or ""
