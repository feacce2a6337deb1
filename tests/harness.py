"""Drives the real application through the real aiogram Dispatcher, against the fake Bot API server."""
from __future__ import annotations

import copy
import itertools
from pathlib import Path
from typing import Any

from aiogram import Bot

from bot.app import Application, build_application, build_bot
from bot.config import Settings, load_settings
from bot.delivery import DeliveryWorker
from handlers.user.creating import Creations
from services.gateways.base import Gateway
from tests.fakes.bot_api import FakeBotAPI, as_update, callback_update, message_update

ADMIN_CHAT_ID = -1001234567890
TOKEN = "123456:TEST-token-for-tests"
# Telegram numbers a bot's updates once for all its instances; two harnesses on one Redis must not reuse ids.
_UPDATE_IDS = itertools.count(1)


def test_env(api_url: str, db: Path | str, **overrides: str) -> dict[str, str]:
    """The bot's environment in tests; `db` is a SQLite file, or a DATABASE_URL (the `database_url` fixture)."""
    env = {
        "BOT_TOKEN": TOKEN,
        "TELEGRAM_API_URL": api_url,
        "DATABASE_URL": db if isinstance(db, str) else f"sqlite:///{db}",
        "ADMIN_CHAT_ID": str(ADMIN_CHAT_ID),
        "PAYMENT_GATEWAY": "sandbox",
        # Most tests create deposits freely; tests/test_limits.py sets the per-user limits it checks.
        "MAX_OPEN_DEPOSITS": "20",
        "MAX_DEPOSITS_PER_HOUR": "100",
    }
    env.update(overrides)
    return env


class Harness:
    def __init__(self, api: FakeBotAPI, app: Application, bot: Bot) -> None:
        self.api = api
        self.app = app
        self.bot = bot
        self.delivery = DeliveryWorker(bot, app.db, app.renderer, per_chat_interval_seconds=0,
                                       global_rate_per_second=1000, admin_events=app.settings.admin_events)
        # Most tests read the card right after tapping Create; tests of a slow gateway turn this off.
        self.wait_for_creations = True

    @classmethod
    async def start(cls, api: FakeBotAPI, db: Path | str, *, gateway: Gateway | None = None,
                    **env: str) -> Harness:
        settings = load_settings(test_env(api.base_url, db, **env))
        return await cls.from_settings(api, settings, gateway=gateway)

    @classmethod
    async def from_settings(cls, api: FakeBotAPI, settings: Settings, *, gateway: Gateway | None = None) -> Harness:
        app = await build_application(settings, gateway=gateway)
        return cls(api, app, build_bot(settings))

    async def close(self) -> None:
        await self.bot.session.close()
        await self.app.close()

    async def feed(self, update: dict[str, Any]) -> None:
        await self.app.dispatcher.feed_update(self.bot, as_update(update, next(_UPDATE_IDS)))
        if self.wait_for_creations:
            await self.creations.join()

    @property
    def creations(self) -> Creations:
        """Deposits being created in the background (the gateway call runs outside the user's update lock)."""
        return self.app.dispatcher["creations"]

    async def send(self, user_id: int, text: str, **kwargs: Any) -> None:
        await self.feed(message_update(user_id, text, **kwargs))

    async def press(self, user_id: int, data: str, *, message_id: int, chat_id: int | None = None,
                    **kwargs: Any) -> None:
        """Press a button whose data is `data` on the stored bot message `message_id` (any data: clients can forge)."""
        chat_id = user_id if chat_id is None else chat_id
        update = callback_update(user_id, data, message_id=message_id, chat_id=chat_id, **kwargs)
        stored = self.api.messages.get((chat_id, message_id))
        if stored is not None:
            update["callback_query"]["message"] = copy.deepcopy(stored)
        await self.feed(update)

    async def tap(self, user_id: int, label: str, *, chat_id: int | None = None, **kwargs: Any) -> None:
        """Tap the button whose text contains `label` on the newest bot message in the chat that has one."""
        chat_id = user_id if chat_id is None else chat_id
        for message in reversed(self.api.sent_to(chat_id)):
            for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
                for button in row:
                    if label in button["text"] and "callback_data" in button:
                        await self.press(user_id, button["callback_data"], message_id=message["message_id"],
                                         chat_id=chat_id, **kwargs)
                        return
        raise AssertionError(f"no button {label!r} in chat {chat_id}; messages: {self.texts(chat_id)}")

    def last(self, chat_id: int) -> dict[str, Any]:
        return self.api.sent_to(chat_id)[-1]

    def last_text(self, chat_id: int) -> str:
        message = self.last(chat_id)
        return message.get("text") or message.get("caption") or ""

    def texts(self, chat_id: int) -> list[str]:
        return [m.get("text") or m.get("caption") or "" for m in self.api.sent_to(chat_id)]

    def buttons(self, message: dict[str, Any]) -> list[str]:
        return [b["text"] for row in (message.get("reply_markup") or {}).get("inline_keyboard", []) for b in row]

    def toasts(self) -> list[str]:
        return [c.params.get("text", "") for c in self.api.calls_of("answerCallbackQuery")]

    async def deliver(self) -> int:
        return await self.delivery.run_once()
