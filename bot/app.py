"""Assembly: builds every service from the settings and wires them into one aiogram Dispatcher."""
from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, ErrorEvent

from bot.config import Settings
from bot.delivery import DeliveryWorker
from bot.fsm_storage import SQLiteStorage
from bot.i18n import Locales
from bot.middlewares import UserContextMiddleware
from handlers import build_routers
from services.gateways.base import Gateway
from services.gateways.sandbox import SandboxGateway
from services.gateways.smsonline import SMSOnlineGateway
from services.matrix import Matrix
from services.reconciler import Reconciler
from services.settlement import Settler
from services.store import Database
from services.topup import FIRST_CHECK_DELAY_SECONDS, TopupService

log = logging.getLogger(__name__)

USER_COMMANDS = ("start", "topup", "balance", "history", "language", "help", "cancel")


def build_gateway(settings: Settings) -> Gateway:
    if settings.payment_gateway == "smsonline":
        return SMSOnlineGateway(settings.smsonline_api_url, settings.smsonline_user_id,
                                settings.smsonline_api_key.value)
    return SandboxGateway()


def build_bot(settings: Settings) -> Bot:
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(settings.bot_token.value, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


@dataclass
class Application:
    """Everything the running bot owns; `close()` releases it in reverse order."""

    settings: Settings
    db: Database
    gateway: Gateway
    locales: Locales
    topup: TopupService
    settler: Settler
    reconciler: Reconciler
    dispatcher: Dispatcher

    async def close(self) -> None:
        await self.gateway.close()
        await self.db.close()


async def build_application(settings: Settings, *, gateway: Gateway | None = None) -> Application:
    db = Database(settings.database_path)
    await db.connect()
    gateway = gateway or build_gateway(settings)
    matrix = Matrix(gateway.pairs, settings.allowed_pairs)
    if not len(matrix):
        raise RuntimeError("ALLOWED_PAIRS leaves no coin/network pair that the gateway supports")
    locales = Locales(settings.default_locale)
    settler = Settler(db, admin_chat_id=settings.admin_chat_id)
    topup = TopupService(db, gateway, matrix, settler, settings.amount_limits, admin_chat_id=settings.admin_chat_id,
                         quick_amounts_cents=settings.quick_amounts_cents,
                         first_check_delay_seconds=min(FIRST_CHECK_DELAY_SECONDS, settings.reconcile_interval_seconds))
    reconciler = Reconciler(db, gateway, settler, interval_seconds=settings.reconcile_interval_seconds,
                            admin_chat_id=settings.admin_chat_id)

    # One update at a time per user: a double tap can't race the flow's state checks.
    dispatcher = Dispatcher(storage=SQLiteStorage(db), events_isolation=SimpleEventIsolation())
    dispatcher.workflow_data.update(settings=settings, db=db, gateway=gateway, locales=locales, topup=topup,
                                    settler=settler)
    context = UserContextMiddleware(db, locales)
    dispatcher.message.outer_middleware(context)
    dispatcher.callback_query.outer_middleware(context)
    dispatcher.include_routers(*build_routers())
    dispatcher.errors.register(on_error)
    return Application(settings, db, gateway, locales, topup, settler, reconciler, dispatcher)


async def on_error(event: ErrorEvent, locales: Locales) -> bool:
    """Log any handler failure and tell the user something went wrong, instead of leaving them hanging."""
    log.error("handler failed on update %s", event.update.update_id, exc_info=event.exception)
    update = event.update
    sender = (update.message or update.callback_query or update.edited_message)
    user = getattr(sender, "from_user", None)
    t = locales.get(locales.pick(None, getattr(user, "language_code", None)))
    with suppress(Exception):
        if update.callback_query is not None:
            await update.callback_query.answer(t("error.generic"), show_alert=True)
        elif update.message is not None and update.message.chat.type == "private":
            await update.message.answer(t("error.generic"))
    return True


async def set_commands(bot: Bot, locales: Locales) -> None:
    for code in locales.available:
        t = locales.get(code)
        commands = [BotCommand(command=name, description=t(f"command.{name}")) for name in USER_COMMANDS]
        language = None if code == locales.default else code
        await bot.set_my_commands(commands, scope=BotCommandScopeAllPrivateChats(), language_code=language)


async def run_polling(settings: Settings) -> None:
    app = await build_application(settings)
    bot = build_bot(settings)
    delivery = DeliveryWorker(bot, app.db, app.locales, sandbox=app.gateway.is_sandbox)
    app.settler.after_commit = delivery.wake
    tasks: list[asyncio.Task[Any]] = []

    async def on_startup() -> None:
        me = await bot.get_me()
        log.info("bot @%s started; gateway %s; database %s", me.username, app.gateway.name, settings.database_path)
        await bot.delete_webhook(drop_pending_updates=False)
        try:
            await set_commands(bot, app.locales)
        except Exception:  # noqa: BLE001 - a missing command menu must not stop the bot
            log.warning("could not set the command menu", exc_info=True)
        tasks.append(asyncio.create_task(app.reconciler.run_forever(), name="reconciler"))
        tasks.append(asyncio.create_task(delivery.run_forever(), name="delivery"))

    async def on_shutdown() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.dispatcher.startup.register(on_startup)
    app.dispatcher.shutdown.register(on_shutdown)
    try:
        await app.dispatcher.start_polling(bot, allowed_updates=app.dispatcher.resolve_used_update_types())
    finally:
        await bot.session.close()
        await app.close()
