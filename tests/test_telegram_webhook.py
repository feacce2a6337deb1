"""Telegram webhook mode: updates POSTed to the real listener, checked against the secret, fed to the real dispatcher.

Telegram sends the secret given to setWebhook in the X-Telegram-Bot-Api-Secret-Token header
(https://core.telegram.org/bots/api#setwebhook); anything without it must not reach the bot. The bot's
answers go to the FakeBotAPI over real HTTP.

(A 429 from the Bot API while delivering a notification is covered in tests/test_delivery.py.)
"""
from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import Application, attach_telegram_webhook, build_application, build_bot
from bot.config import ConfigError, Settings, load_settings
from bot.web import TELEGRAM_WEBHOOK_PATH
from services.store import users
from tests.fakes.bot_api import FakeBotAPI, message_update
from tests.harness import test_env as make_env

PUBLIC = "https://bot.example.com"
SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
USER = 31337
_update_ids = itertools.count(500_000)


def webhook_settings(api: FakeBotAPI, db_path: Path, **env: str) -> Settings:
    return load_settings(make_env(api.base_url, db_path, TELEGRAM_WEBHOOK="true", PUBLIC_URL=PUBLIC, **env))


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[tuple[Application, str, str]]:
    """The application with Telegram's webhook attached, listening on 127.0.0.1: (app, secret, base URL)."""
    app = await build_application(settings)
    bot = build_bot(settings)
    runner: web.AppRunner | None = None
    try:
        secret = await attach_telegram_webhook(app, bot)
        runner = web.AppRunner(app.web_app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        yield app, secret, f"http://127.0.0.1:{port}"
    finally:
        if runner is not None:
            await runner.cleanup()
        await bot.session.close()
        await app.close()


def start_update(user_id: int = USER, text: str = "/start", **kwargs: Any) -> dict[str, Any]:
    return {"update_id": next(_update_ids), **message_update(user_id, text, first_name="Zelda", **kwargs)}


async def post_update(base: str, update: dict[str, Any], secret: str | None) -> int:
    headers = {} if secret is None else {SECRET_HEADER: secret}
    async with aiohttp.ClientSession() as session, session.post(
            f"{base}{TELEGRAM_WEBHOOK_PATH}", json=update, headers=headers) as resp:
        await resp.read()
        return resp.status


def greetings(api: FakeBotAPI, chat_id: int) -> list[str]:
    return [c.params.get("text", "") for c in api.calls_of("sendMessage")
            if str(c.params.get("chat_id")) == str(chat_id) and "Zelda" in c.params.get("text", "")]


# --- the secret guards the endpoint -----------------------------------------------------------------------------

async def test_an_update_with_the_secret_is_answered_and_others_are_refused(api: FakeBotAPI, tmp_path: Path):
    async with served(webhook_settings(api, tmp_path / "bot.sqlite3")) as (_, secret, base):
        assert await post_update(base, start_update(), None) == 401
        assert await post_update(base, start_update(), "") == 401
        assert await post_update(base, start_update(), "wrong-secret") == 401
        assert await post_update(base, start_update(), secret + "x") == 401
        assert await post_update(base, start_update(), secret[:-1]) == 401
        assert api.calls_of("sendMessage", include_failed=True) == []

        mark = api.mark()
        assert await post_update(base, start_update(), secret) == 200
        call = await api.wait_for_call("sendMessage", since=mark)
        assert str(call.params["chat_id"]) == str(USER)
        assert "Hi, Zelda" in call.params["text"]

        # A second good update is handled too; only the one accepted /start was ever greeted.
        mark = api.mark()
        assert await post_update(base, start_update(text="/help"), secret) == 200
        await api.wait_for_call("sendMessage", since=mark)
        assert len(greetings(api, USER)) == 1


async def test_refused_updates_leave_no_trace_of_the_user(api: FakeBotAPI, tmp_path: Path):
    async with served(webhook_settings(api, tmp_path / "bot.sqlite3")) as (app, _, base):
        assert await post_update(base, start_update(user_id=999), "forged") == 401
        assert await users.get(app.db.reader, 999) is None
        assert api.sent_to(999) == []


# --- the secret is generated once and kept ---------------------------------------------------------------------

async def test_the_generated_secret_survives_a_restart(api: FakeBotAPI, tmp_path: Path):
    db_path = tmp_path / "bot.sqlite3"
    async with served(webhook_settings(api, db_path)) as (_, first, _base):
        pass
    assert re.fullmatch(r"[A-Za-z0-9_-]{32,256}", first)  # what setWebhook accepts, and long enough to guess-proof
    async with served(webhook_settings(api, db_path)) as (_, second, base):
        assert second == first
        mark = api.mark()
        assert await post_update(base, start_update(), first) == 200  # Telegram keeps sending the old one
        await api.wait_for_call("sendMessage", since=mark)
    async with served(webhook_settings(api, tmp_path / "other.sqlite3")) as (_, other, _base):
        assert other != first  # generated per installation, not a constant


async def test_a_configured_secret_is_used_as_is(api: FakeBotAPI, tmp_path: Path):
    configured = "my-Own_secret-0123456789"
    settings = webhook_settings(api, tmp_path / "bot.sqlite3", TELEGRAM_WEBHOOK_SECRET=configured)
    async with served(settings) as (_, secret, base):
        assert secret == configured
        assert await post_update(base, start_update(), "some-other-secret") == 401
        mark = api.mark()
        assert await post_update(base, start_update(), configured) == 200
        call = await api.wait_for_call("sendMessage", since=mark)
        assert "Hi, Zelda" in call.params["text"]


# --- configuration ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("public_url", [None, "http://bot.example.com"])
def test_webhook_mode_needs_an_https_public_url(tmp_path: Path, public_url: str | None):
    env = make_env("http://127.0.0.1:1", tmp_path / "bot.sqlite3", TELEGRAM_WEBHOOK="true")
    if public_url is not None:
        env["PUBLIC_URL"] = public_url
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "PUBLIC_URL" in str(caught.value)
    assert "TELEGRAM_WEBHOOK" in str(caught.value)


def test_long_polling_does_not_need_https(tmp_path: Path):
    settings = load_settings(make_env("http://127.0.0.1:1", tmp_path / "bot.sqlite3", TELEGRAM_WEBHOOK="false",
                                      PUBLIC_URL="http://bot.example.com"))
    assert settings.telegram_webhook is False and settings.public_url == "http://bot.example.com"


@pytest.mark.parametrize("secret", ["has space", "semi;colon", "x" * 257])
def test_a_secret_telegram_would_refuse_stops_start_up(tmp_path: Path, secret: str):
    env = make_env("http://127.0.0.1:1", tmp_path / "bot.sqlite3", TELEGRAM_WEBHOOK="true", PUBLIC_URL=PUBLIC,
                   TELEGRAM_WEBHOOK_SECRET=secret)
    with pytest.raises(ConfigError) as caught:
        load_settings(env)
    assert "TELEGRAM_WEBHOOK_SECRET" in str(caught.value)
    assert secret not in str(caught.value)
