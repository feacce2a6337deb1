"""Assembly: builds every service from the settings and wires them into one aiogram Dispatcher."""
from __future__ import annotations

import asyncio
import logging
import signal
from contextlib import suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramMigrateToChat
from aiogram.fsm.storage.memory import SimpleEventIsolation
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats, BotCommandScopeChat, ErrorEvent
from aiogram.webhook.aiohttp_server import SimpleRequestHandler, setup_application
from aiohttp import web

from handlers.admin_access import AdminAccess
from bot.api import OperatorApi
from bot.config import ConfigError, Settings
from bot.database import open_database
from bot.delivery import DeliveryWorker
from bot.operator_webhook import EventSender
from bot.heap import freeze_startup_heap
from bot.telegram_models import pin_response_models
from bot.fsm_storage import FSMWriteBack, SQLiteStorage
from handlers.i18n import Locales
from handlers.ui.views import support_line
from handlers.user.creating import Creations
from bot.middlewares import UserContextMiddleware
from bot.leader import LEADER_LOCK, Duty, Leadership
from bot.redis_state import RedisState, connect_redis, eviction_warning, redis_reachable
from bot.web import LEADERSHIP, TELEGRAM_WEBHOOK_PATH, build_web_app, make_runner
from handlers import admin as admin_handlers
from handlers import build_routers
from handlers.ui.notifications import NotificationRenderer
from services.admin import AdminService
from services.api_access import ApiAccess
from services.gateways.base import Gateway, GatewayError
from services.gateways.registry import spec_named
from services.gateways.capabilities import Capabilities
from services.gateways.spec import GatewayContext
from services.links import Linker
from services.matrix import Matrix
from services.payouts import PayoutService
from services.operator_events import OperatorEvents
from services.reconciler import Reconciler
from services.redact import register_secret
from services.settlement import Settler
from services.webhooks import CallbackInbox, CallbackPolicy
from services.store import Database
from services.store.settings import get_or_create_secret
from services.summary import daily_summary_forever
from services.topup import FIRST_CHECK_DELAY_SECONDS, TopupService, UserLimits
from services.wallet import Wallet
from services import test_money

log = logging.getLogger(__name__)

USER_COMMANDS = ("start", "topup", "balance", "history", "language", "help", "cancel")


PAIR_REFRESH_SECONDS = 30 * 60


async def build_gateway(settings: Settings, db: Database) -> tuple[Gateway, Capabilities, dict[str, CallbackPolicy]]:
    """The configured gateway, what it can do (checked against its spec), and the checks its callbacks must pass."""
    spec = spec_named(settings.payment_gateway)
    assert spec is not None, settings.payment_gateway  # load_settings accepts only the names of specs
    built = await spec.build_from(settings.gateway, GatewayContext(db, settings.public_url))
    policies = {spec.name: built.callback_policy} if built.callback_policy is not None else {}
    return built.gateway, spec.capabilities_of(built.gateway), policies


def build_bot(settings: Settings) -> Bot:
    # Every configured secret, masked in every log record from here on (services/redact.py).
    register_secret(settings.bot_token.value, *settings.gateway.secrets(),
                    *(s.value for s in (settings.telegram_webhook_secret, settings.redis_url, settings.operator_api_key,
                                        settings.operator_webhook_secret) if s is not None))
    session = AiohttpSession(api=TelegramAPIServer.from_base(settings.telegram_api_url))
    return Bot(settings.bot_token.value, session=session, default=DefaultBotProperties(parse_mode=ParseMode.HTML))


@dataclass
class Application:
    """Everything the running bot owns; `close()` releases it in reverse order."""

    settings: Settings
    db: Database
    gateway: Gateway
    capabilities: Capabilities
    locales: Locales
    topup: TopupService
    settler: Settler
    reconciler: Reconciler
    dispatcher: Dispatcher
    matrix: Matrix
    web_app: web.Application
    renderer: NotificationRenderer
    wallet: Wallet
    operator_api: OperatorApi
    redis: RedisState | None = None

    async def refresh_pairs_forever(self) -> None:
        """Keep the offered pairs in step with the gateway (Cryptomus); the last good list stays on failure."""
        if self.capabilities.refresh is None:
            return
        while True:
            await asyncio.sleep(PAIR_REFRESH_SECONDS)
            await self.refresh_pairs_once()

    async def refresh_pairs_once(self) -> None:
        refresh = self.capabilities.refresh
        if refresh is None:
            return
        try:
            self.matrix.replace_gateway_pairs(await refresh.refresh_pairs())
        except GatewayError as exc:
            log.warning("could not refresh the %s pairs (keeping the last list): %s", self.gateway.name,
                        exc.operator_detail)

    async def close(self) -> None:
        await self.dispatcher["creations"].close()  # a creation cut short is marked failed, before the store closes
        await self.gateway.close()
        if self.redis is not None:
            await self.redis.close()
        await self.db.close()


async def build_application(settings: Settings, *, gateway: Gateway | None = None,
                            policies: dict[str, CallbackPolicy] | None = None) -> Application:
    pin_response_models()
    db = await open_database(settings.database_url)
    if gateway is None:
        gateway, capabilities, policies = await build_gateway(settings, db)
    else:  # built by hand (tests): whatever protocols it implements
        capabilities = Capabilities.of(gateway)
    matrix = Matrix(gateway.pairs, settings.allowed_pairs)
    locales = Locales(settings.default_locale, admin=settings.admin_locale)
    events = OperatorEvents(enabled=settings.operator_webhook_url is not None)
    settler = Settler(db, admin_chat_id=settings.admin_chat_id, events=events)
    topup = TopupService(db, gateway, matrix, settler, settings.amount_limits, admin_chat_id=settings.admin_chat_id,
                         capabilities=capabilities,
                         quick_amounts_cents=settings.quick_amounts_cents,
                         first_check_delay_seconds=min(FIRST_CHECK_DELAY_SECONDS, settings.reconcile_interval_seconds),
                         user_limits=UserLimits(settings.max_open_deposits, settings.max_deposits_per_hour))
    reconciler = Reconciler(db, gateway, settler, interval_seconds=settings.reconcile_interval_seconds,
                            admin_chat_id=settings.admin_chat_id, capabilities=capabilities)

    # One update at a time per user: a double tap can't race the flow's state checks. With REDIS_URL the state
    # and that lock are shared by every instance; without it they live in this process and its database.
    redis = connect_redis(settings.redis_url.value, prefix=settings.redis_key_prefix) if settings.redis_url else None
    if redis is not None:
        dispatcher = Dispatcher(storage=redis.storage, events_isolation=redis.isolation)
        dispatcher.update.outer_middleware(redis.finished_updates)  # after the FSM's: inside the per-user lock
    else:
        storage = SQLiteStorage(db)
        dispatcher = Dispatcher(storage=storage, events_isolation=SimpleEventIsolation())
        dispatcher.update.outer_middleware(FSMWriteBack(storage))  # after the FSM's: inside the per-user lock
    admin = AdminService(db, settler, allow_negative_balance=settings.allow_negative_balance,
                         confirm_seconds=settings.confirm_seconds, sandbox=gateway.is_sandbox, events=events)
    payouts = (PayoutService(db, capabilities.payouts, settings.payout_max_cents, settings.payout_daily_max_cents)
               if capabilities.payouts is not None else None)
    wallet = Wallet(db, events, notify_customers=settings.notify_charges)
    linker = Linker(db, events, ttl_hours=settings.link_ttl_hours)
    dispatcher.workflow_data.update(settings=settings, db=db, gateway=gateway, capabilities=capabilities,
                                    locales=locales, topup=topup,
                                    settler=settler, admin=admin, admin_access=AdminAccess(
        settings.admin_chat_id, settings.admin_user_ids, private_commands=settings.admin_private_commands),
                                    payouts=payouts, linker=linker, support_contact=settings.support_contact,
                                    creations=Creations(topup))
    context = UserContextMiddleware(db, locales, admin_chat_id=settings.admin_chat_id)
    dispatcher.message.outer_middleware(context)
    dispatcher.callback_query.outer_middleware(context)
    dispatcher.include_routers(*build_routers())
    dispatcher.errors.register(on_error)
    inbox = CallbackInbox(db, gateway, settler, admin_chat_id=settings.admin_chat_id,
                          trusted_proxies=settings.trusted_proxies, policies=policies or {},
                          capabilities=capabilities)
    operator_api = OperatorApi(
        ApiAccess(db, settings.operator_api_key.value if settings.operator_api_key else None), wallet, linker,
        rate_limit=settings.api_rate_limit)
    web_app = build_web_app(db, gateway, inbox, redis=redis, capabilities=capabilities)
    operator_api.install(web_app)
    app = Application(settings, db, gateway, capabilities, locales, topup, settler, reconciler, dispatcher, matrix,
                      web_app, NotificationRenderer(locales, sandbox=gateway.is_sandbox), wallet, operator_api, redis)
    await app.refresh_pairs_once()
    if not len(matrix):
        await app.close()
        raise ConfigError(f"ALLOWED_PAIRS leaves no coin/network pair that {gateway.name} offers; widen it, "
                          "or leave it empty to offer everything")
    return app


# Telegram's answers to an edit that can't apply: the message already shows this (a double tap), or it can't show
# text at all (a menu button forged onto a photo). Neither is a failure worth alarming the user about.
_NOT_MODIFIED = "message is not modified"
_NOT_EDITABLE = ("there is no text in the message to edit", "message can't be edited", "message to edit not found")


async def on_error(event: ErrorEvent, locales: Locales, admin_access: AdminAccess,
                   support_contact: str | None = None) -> bool:
    """Log any handler failure and tell the user something went wrong, instead of leaving them hanging."""
    update = event.update
    sender = (update.message or update.callback_query or update.edited_message)
    user = getattr(sender, "from_user", None)
    message = update.callback_query.message if update.callback_query is not None else update.message
    if message is not None and message.chat.id == admin_access.admin_chat_id:
        t = locales.for_admin()  # the admin chat speaks one language, its failures too
    else:
        t = locales.get(locales.pick(None, getattr(user, "language_code", None)))
    exc = event.exception
    if isinstance(exc, TelegramBadRequest) and update.callback_query is not None:
        if _NOT_MODIFIED in exc.message:
            with suppress(Exception):
                await update.callback_query.answer()
            return True
        if any(reason in exc.message for reason in _NOT_EDITABLE):
            with suppress(Exception):
                await update.callback_query.answer(t("stale"))
            return True
    log.error("handler failed on update %s", update.update_id, exc_info=exc)
    with suppress(Exception):
        if update.callback_query is not None:
            await update.callback_query.answer(t("error.generic"), show_alert=True)
        elif update.message is not None and update.message.chat.type == "private":
            await update.message.answer(t("error.generic") + support_line(t, support_contact))
    return True


async def set_commands(bot: Bot, locales: Locales, admin_chat_id: int | None) -> None:
    """Users see user commands in private chats; the admin chat sees the admin commands."""
    for code in locales.available:
        t = locales.get(code)
        commands = [BotCommand(command=name, description=t(f"command.{name}")) for name in USER_COMMANDS]
        language = None if code == locales.default else code
        await bot.set_my_commands(commands, scope=BotCommandScopeAllPrivateChats(), language_code=language)
    if admin_chat_id is not None:
        t = locales.for_admin()
        await bot.set_my_commands([BotCommand(command=name, description=t(f"admin.command.{name}"))
                                   for name in admin_handlers.ADMIN_COMMANDS],
                                  scope=BotCommandScopeChat(chat_id=admin_chat_id))


async def set_descriptions(bot: Bot, locales: Locales) -> None:
    """What Telegram shows before a customer taps Start, in each shipped language (the default language without a
    language code). A text the operator set in @BotFather is kept: only empty ones are filled in."""
    for code in locales.available:
        t = locales.get(code)
        language = None if code == locales.default else code
        if not (await bot.get_my_description(language_code=language)).description:
            await bot.set_my_description(t("bot.description"), language_code=language)
        if not (await bot.get_my_short_description(language_code=language)).short_description:
            await bot.set_my_short_description(t("bot.short-description"), language_code=language)


async def check_admin_chat(bot: Bot, admin_chat_id: int | None) -> None:
    """Say in the log, at start-up, when ADMIN_CHAT_ID can't work as set: unset, upgraded, or without the bot."""
    if admin_chat_id is None:
        log.warning("ADMIN_CHAT_ID is not set: add the bot to your staff group and it replies with the id to set")
        return
    try:
        await bot.get_chat(admin_chat_id)
    except TelegramMigrateToChat as exc:
        log.warning("ADMIN_CHAT_ID=%s became a supergroup with the id %s: set ADMIN_CHAT_ID=%s and restart",
                    admin_chat_id, exc.migrate_to_chat_id, exc.migrate_to_chat_id)
    except TelegramAPIError as exc:
        log.warning("ADMIN_CHAT_ID=%s can't be reached (%s): add the bot to that group, or correct the id (the bot "
                    "tells any group it joins its id)", admin_chat_id, exc.message)


async def run(settings: Settings) -> None:
    """Run the bot: the listener always (callbacks, /healthz), and Telegram by long polling or webhook.

    The token is checked first, so a wrong one leaves no database file and no open port behind.
    """
    bot = build_bot(settings)
    try:
        await bot.get_me()
        if settings.redis_url is not None and not await redis_reachable(settings.redis_url.value):
            where = urlparse(settings.redis_url.value)
            raise ConfigError(f"cannot reach Redis at {where.hostname or where.path}:{where.port or 6379} "
                              "(REDIS_URL); start Redis or fix REDIS_URL, or remove REDIS_URL to run a single "
                              "instance")
        app = await build_application(settings)
        if app.redis is not None and (warning := eviction_warning(await app.redis.eviction_policy())):
            log.warning(warning)
        freeze_startup_heap()
    except BaseException:
        await bot.session.close()
        raise
    delivery = DeliveryWorker(bot, app.db, app.renderer, admin_events=settings.admin_events)
    events = EventSender.from_settings(app.db, settings)
    wakers = [delivery.wake] + ([events.wake] if events is not None else [])

    def wake_all() -> None:
        for wake in wakers:
            wake()

    app.settler.after_commit = wake_all
    app.wallet.after_commit.extend(wakers)
    app.operator_api.bot_username = lambda: _username(bot)
    tasks: list[asyncio.Task[Any]] = []
    allowed_updates = app.dispatcher.resolve_used_update_types()
    webhook_secret = await attach_telegram_webhook(app, bot) if settings.telegram_webhook else None

    async def chores() -> None:
        """Once per leader, not once per instance: the webhook, the command menus and descriptions, the admin chat."""
        if webhook_secret is not None:
            await bot.set_webhook(f"{settings.public_url}{TELEGRAM_WEBHOOK_PATH}", secret_token=webhook_secret,
                                  allowed_updates=allowed_updates, drop_pending_updates=False)
        elif app.db.dialect == "sqlite":
            await bot.delete_webhook(drop_pending_updates=False)  # one process: polling replaces any old webhook
        try:
            await set_commands(bot, app.locales, settings.admin_chat_id)
        except Exception:  # noqa: BLE001 - a missing command menu must not stop the bot
            log.warning("could not set the command menu", exc_info=True)
        try:
            await set_descriptions(bot, app.locales)
        except Exception:  # noqa: BLE001 - nor must a missing description
            log.warning("could not set the bot's description", exc_info=True)
        await check_admin_chat(bot, settings.admin_chat_id)
        if not app.gateway.is_sandbox and settings.admin_chat_id is not None:
            await test_money.warn_once(app.db, admin_chat_id=settings.admin_chat_id)  # test money in a live bot

    duties: dict[str, Duty] = {"delivery": delivery.run_forever}
    if events is not None:
        duties["operator-events"] = events.run_forever
    if settings.admin_chat_id is not None and "summary" in settings.admin_events:
        admin_chat_id = settings.admin_chat_id
        duties["summary"] = lambda: daily_summary_forever(app.db, admin_chat_id=admin_chat_id,
                                                          hour=settings.daily_summary_hour,
                                                          include_test=app.gateway.is_sandbox)
    leadership = Leadership(app.db, on_elected=chores, duties=duties)
    app.web_app[LEADERSHIP] = leadership
    # Several instances need the webhook and Redis (the conversations); otherwise this must be the only instance.
    one_of_many = webhook_secret is not None and (app.redis is not None or app.db.dialect == "sqlite")

    async def on_startup() -> None:
        log.info("bot started; gateway %s; database %s", app.gateway.name, app.db.describe())
        # Every instance polls the gateway: each due deposit is leased to one of them.
        tasks.append(asyncio.create_task(app.reconciler.run_forever(), name="reconciler"))
        tasks.append(asyncio.create_task(app.refresh_pairs_forever(), name="pairs"))
        if one_of_many:
            tasks.append(asyncio.create_task(leadership.run_forever(), name="leadership"))

    async def on_shutdown() -> None:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    app.dispatcher.startup.register(on_startup)
    app.dispatcher.shutdown.register(on_shutdown)
    runner = make_runner(app.web_app)
    await runner.setup()
    try:
        if webhook_secret is None:
            await refuse_polling_beside_webhook(app, bot)
        if one_of_many:
            await listen(runner, settings)
            log.info("listening on %s:%s", settings.web_host, settings.web_port)
            await _serve_until_signalled()
        else:
            await serve_as_the_only_instance(app, bot, runner, leadership, allowed_updates,
                                             polling=webhook_secret is None)
    finally:
        await runner.cleanup()  # in webhook mode this also runs the dispatcher's shutdown
        await app.dispatcher["creations"].close()  # while the bot can still tell users about cut-short creations
        await bot.session.close()
        await app.close()


async def refuse_polling_beside_webhook(app: Application, bot: Bot) -> None:
    """On a shared database, long polling must not switch off instances that take updates by webhook."""
    if app.db.dialect == "sqlite":
        return  # one process by construction; polling replaces an old webhook, as it always did
    info = await bot.get_webhook_info()
    if info.url:
        raise ConfigError(f"a Telegram webhook is set ({info.url}), so other instances take the updates; long "
                          "polling would switch them off. Set TELEGRAM_WEBHOOK=true (and PUBLIC_URL) to join them, "
                          "or stop them and delete the webhook first")


async def serve_as_the_only_instance(app: Application, bot: Bot, runner: web.AppRunner, leadership: Leadership,
                                     allowed_updates: list[str], *, polling: bool) -> None:
    """Long polling, or a webhook without Redis (conversations kept by this process): one instance only. It holds
    the leader lock for as long as it runs, and refuses to start beside another instance on the same database."""
    async with app.db.session_lock(LEADER_LOCK, wait=False) as lock:
        if not lock.held:
            raise ConfigError(
                "another instance of this bot already runs on this database; " + (
                    "long polling is for one instance. To run several, set TELEGRAM_WEBHOOK=true and REDIS_URL on "
                    "every instance" if polling else
                    "several instances share their conversations through Redis: set REDIS_URL on every instance"))
        await listen(runner, app.settings)
        log.info("listening on %s:%s", app.settings.web_host, app.settings.web_port)
        leading = asyncio.create_task(leadership.lead_while(lock.lost), name="leadership")
        serving = asyncio.create_task(app.dispatcher.start_polling(bot, allowed_updates=allowed_updates) if polling
                                      else _serve_until_signalled())
        done, _ = await asyncio.wait({leading, serving}, return_when=asyncio.FIRST_COMPLETED)
        if serving not in done:
            if polling:
                with suppress(RuntimeError):
                    await app.dispatcher.stop_polling()
                await serving
            else:
                serving.cancel()
                with suppress(asyncio.CancelledError):
                    await serving
            raise ConfigError("lost the database connection that holds the leader lock; start the bot again")
        leading.cancel()
        with suppress(asyncio.CancelledError):
            await leading
        serving.result()


async def listen(runner: web.AppRunner, settings: Settings) -> None:
    try:
        await web.TCPSite(runner, settings.web_host, settings.web_port).start()
    except OSError as exc:
        raise ConfigError(f"WEB_PORT={settings.web_port}: cannot listen on {settings.web_host}:{settings.web_port} "
                          f"({exc.strerror or exc}); stop the program using it, or set WEB_PORT (and WEB_HOST) "
                          "to a free address") from None


async def _username(bot: Bot) -> str:
    me = await bot.me()  # asked once, then remembered by aiogram
    return me.username or ""


async def attach_telegram_webhook(app: Application, bot: Bot) -> str:
    """Serve Telegram's updates on the listener; returns the secret Telegram must send with each one."""
    configured = app.settings.telegram_webhook_secret
    secret = configured.value if configured else await get_or_create_secret(app.db, "telegram_webhook_secret")
    register_secret(secret)
    # The update is handled before Telegram gets its 200: an instance killed half-way leaves the update
    # unanswered and Telegram sends it again (to any instance), instead of it being lost in a background task.
    SimpleRequestHandler(dispatcher=app.dispatcher, bot=bot, secret_token=secret,
                         handle_in_background=False).register(app.web_app, path=TELEGRAM_WEBHOOK_PATH)
    setup_application(app.web_app, app.dispatcher, bot=bot)
    return secret


async def _serve_until_signalled() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
