"""Settings from the environment (and .env), checked once at start-up with messages that say how to fix them."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from services.gateways.registry import GATEWAYS, spec_named
from services.matrix import ConfigPairError, Pair, parse_pair_filter
from services.money import AmountLimits
from services.settings import (
    ConfigError,
    Env,
    GatewaySettings,
    Secret,
    parse_bool,
    parse_http_url,
    parse_int,
    parse_ip_networks,
    parse_usd_setting,
)
from services.store.db import DEFAULT_DATABASE_URL, DatabaseURL
from services.webhooks import IPNetwork

__all__ = ["ADMIN_EVENTS", "ConfigError", "Secret", "Settings", "load_settings"]
# What the admin chat is told without asking; ADMIN_EVENTS picks among them.
ADMIN_EVENTS = ("paid", "review", "expired", "gateway", "webhook", "manual", "summary")
_TOKEN_RE = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{5,}", re.ASCII)


@dataclass(frozen=True)
class Settings:
    """The core settings, plus the chosen gateway's own: `gateway`, read by its spec (services/gateways/)."""

    bot_token: Secret
    telegram_api_url: str = "https://api.telegram.org"
    database_url: DatabaseURL = field(default_factory=lambda: DatabaseURL.parse(DEFAULT_DATABASE_URL))
    admin_chat_id: int | None = None
    admin_user_ids: frozenset[int] = frozenset()
    payment_gateway: str = "sandbox"
    gateway: GatewaySettings = GatewaySettings()  # the sandbox's: it has none of its own
    trusted_proxies: frozenset[IPNetwork] = frozenset()
    telegram_webhook: bool = False
    telegram_webhook_secret: Secret | None = None
    web_host: str = "0.0.0.0"
    web_port: int = 8080
    public_url: str | None = None
    reconcile_interval_seconds: int = 60
    amount_limits: AmountLimits = AmountLimits(100, 1_000_000)
    quick_amounts_cents: tuple[int, ...] = (500, 1000, 2500, 5000, 10000)
    default_locale: str = "en"
    admin_locale: str = "en"
    allowed_pairs: frozenset[Pair] | None = None
    log_level: str = "INFO"
    admin_private_commands: bool = False
    allow_negative_balance: bool = False
    admin_events: frozenset[str] = frozenset(ADMIN_EVENTS)
    daily_summary_hour: int = 9
    confirm_seconds: int = 60
    payout_max_cents: int = 50_000
    payout_daily_max_cents: int = 200_000
    max_open_deposits: int = 3
    max_deposits_per_hour: int = 10
    # Many instances: conversation state and the per-user update lock in Redis (None: in the database, one process).
    redis_url: Secret | None = None
    redis_key_prefix: str = "topup"
    operator_api_key: Secret | None = None
    api_rate_limit: int = 20
    link_ttl_hours: int = 24
    operator_webhook_url: str | None = None
    operator_webhook_secret: Secret | None = None
    notify_charges: bool = True
    support_contact: str | None = None  # shown to customers in Help and on failure screens


def load_settings(env: Mapping[str, str], *, available_locales: tuple[str, ...] = ("en", "ru")) -> Settings:
    reader = Env(env)
    get = reader.get

    token = get("BOT_TOKEN")
    if not token:
        raise ConfigError("BOT_TOKEN is not set: create a bot with @BotFather in Telegram (/newbot), "
                          "then put the token it gives you in .env as BOT_TOKEN=123456:ABC...")
    if not _TOKEN_RE.fullmatch(token):
        raise ConfigError("BOT_TOKEN does not look like a bot token (expected digits, a colon, then letters, "
                          "e.g. 123456:ABC-def); copy it again from @BotFather")

    gateway = get("PAYMENT_GATEWAY", "sandbox").lower()
    spec = spec_named(gateway)
    if spec is None:
        raise ConfigError(f"PAYMENT_GATEWAY={gateway!r} is not one of: {', '.join(g.name for g in GATEWAYS)}")
    gateway_settings = spec.settings(reader)

    telegram_webhook = _bool(get("TELEGRAM_WEBHOOK", "false"), "TELEGRAM_WEBHOOK")
    public_url = _http_url(get("PUBLIC_URL"), "PUBLIC_URL") if get("PUBLIC_URL") else None
    if telegram_webhook and (public_url is None or not public_url.startswith("https://")):
        raise ConfigError("TELEGRAM_WEBHOOK=true needs PUBLIC_URL set to the https:// address Telegram can reach "
                          "(e.g. https://bot.example.com); or leave TELEGRAM_WEBHOOK=false for long polling")
    webhook_secret = get("TELEGRAM_WEBHOOK_SECRET")
    if webhook_secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", webhook_secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET may use only letters, digits, _ and - (1 to 256 characters); "
                          "or leave it empty and the bot generates one")
    events = frozenset(e.strip().lower() for e in get("ADMIN_EVENTS", ",".join(ADMIN_EVENTS)).split(",") if e.strip())
    if events - set(ADMIN_EVENTS):
        raise ConfigError(f"ADMIN_EVENTS: unknown {', '.join(sorted(events - set(ADMIN_EVENTS)))}; "
                          f"choose from {', '.join(ADMIN_EVENTS)}")
    summary_hour = _int(get("DAILY_SUMMARY_HOUR", "9"), "DAILY_SUMMARY_HOUR", hint="an hour of the day, 0 to 23 (UTC)")
    if not 0 <= summary_hour <= 23:
        raise ConfigError(f"DAILY_SUMMARY_HOUR={summary_hour} is not an hour of the day (0 to 23, UTC)")
    payout_max = _usd(get("PAYOUT_MAX_USD", "500"), "PAYOUT_MAX_USD")
    payout_daily_max = _usd(get("PAYOUT_DAILY_MAX_USD", "2000"), "PAYOUT_DAILY_MAX_USD")

    min_cents = _usd(get("MIN_AMOUNT_USD", "1"), "MIN_AMOUNT_USD")
    max_cents = _usd(get("MAX_AMOUNT_USD", "10000"), "MAX_AMOUNT_USD")
    if min_cents > max_cents:
        raise ConfigError(f"MIN_AMOUNT_USD ({get('MIN_AMOUNT_USD', '1')}) is above MAX_AMOUNT_USD "
                          f"({get('MAX_AMOUNT_USD', '10000')}); lower the minimum or raise the maximum")
    limits = AmountLimits(min_cents, max_cents)
    # Separated by commas or spaces, so decimals here take a dot: "5, 10, 12.50".
    quick = tuple(_usd(part, "QUICK_AMOUNTS_USD")
                  for part in re.split(r"[,\s]+", get("QUICK_AMOUNTS_USD", "5,10,25,50,100")) if part)

    locale = get("DEFAULT_LOCALE", "en").lower()
    if locale not in available_locales:
        raise ConfigError(f"DEFAULT_LOCALE={locale!r} is not shipped; use one of: {', '.join(available_locales)}")
    admin_locale = get("ADMIN_LOCALE", locale).lower() or locale
    if admin_locale not in available_locales:
        raise ConfigError(f"ADMIN_LOCALE={admin_locale!r} is not shipped; use one of: {', '.join(available_locales)}")

    try:
        allowed = parse_pair_filter(get("ALLOWED_PAIRS"))
    except ConfigPairError as exc:
        raise ConfigError(f"ALLOWED_PAIRS: {exc}; write pairs like USDT:TRON,USDT:BSC,BTC") from None

    try:
        database_url = DatabaseURL.parse(get("DATABASE_URL") or DEFAULT_DATABASE_URL)
    except ValueError as exc:
        raise ConfigError(f"DATABASE_URL: {exc}") from None
    if database_url.path is not None and database_url.path.name in ("", ".", ".."):
        raise ConfigError("DATABASE_URL names no file; write it like sqlite:///data/bot.sqlite3")

    redis_url = _redis_url(get("REDIS_URL")) if get("REDIS_URL") else None
    redis_prefix = get("REDIS_KEY_PREFIX", "topup")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", redis_prefix):
        raise ConfigError("REDIS_KEY_PREFIX may use only letters, digits, _, . and - (1 to 64 characters), "
                          "e.g. topup")

    log_level = get("LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError(f"LOG_LEVEL={log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")

    admin_chat_id = _int(get("ADMIN_CHAT_ID"), "ADMIN_CHAT_ID", hint="the numeric id of the admin group, "
                         "e.g. -1001234567890") if get("ADMIN_CHAT_ID") else None
    if admin_chat_id is not None and admin_chat_id > 0:
        raise ConfigError(f"ADMIN_CHAT_ID={admin_chat_id} is a person's id, not a group's (group ids are negative, "
                          "e.g. -1001234567890); add the bot to your staff group and it replies with the group's id")
    api_key = get("OPERATOR_API_KEY")
    if api_key and not re.fullmatch(r"[\x21-\x7e]{24,256}", api_key):
        raise ConfigError("OPERATOR_API_KEY must be 24 to 256 printable characters without spaces (e.g. the output "
                          "of `openssl rand -hex 32`); or leave it empty and create keys with "
                          "`python -m bot api-keys create NAME`")
    operator_url = _http_url(get("OPERATOR_WEBHOOK_URL"), "OPERATOR_WEBHOOK_URL") if get("OPERATOR_WEBHOOK_URL") \
        else None
    operator_secret = get("OPERATOR_WEBHOOK_SECRET")
    if operator_url and len(operator_secret) < 16:
        raise ConfigError("OPERATOR_WEBHOOK_SECRET is required with OPERATOR_WEBHOOK_URL (at least 16 characters, "
                          "e.g. the output of `openssl rand -hex 32`): events are signed with it")

    return Settings(
        bot_token=Secret(token),
        telegram_api_url=_http_url(get("TELEGRAM_API_URL", "https://api.telegram.org"), "TELEGRAM_API_URL"),
        database_url=database_url,
        admin_chat_id=admin_chat_id,
        admin_user_ids=frozenset(_int(part, "ADMIN_USER_IDS", hint="comma-separated numeric Telegram user ids")
                                 for part in get("ADMIN_USER_IDS").replace(" ", "").split(",") if part),
        payment_gateway=gateway,
        gateway=gateway_settings,
        trusted_proxies=_networks(get("TRUSTED_PROXIES"), "TRUSTED_PROXIES"),
        telegram_webhook=telegram_webhook,
        telegram_webhook_secret=Secret(webhook_secret) if webhook_secret else None,
        web_host=get("WEB_HOST", "0.0.0.0"),
        web_port=_port(get("WEB_PORT", "8080")),
        public_url=public_url,
        reconcile_interval_seconds=_positive_int(get("RECONCILE_INTERVAL_SECONDS", "60"), "RECONCILE_INTERVAL_SECONDS"),
        amount_limits=limits,
        quick_amounts_cents=tuple(c for c in quick if min_cents <= c <= max_cents),
        default_locale=locale,
        admin_locale=admin_locale,
        allowed_pairs=allowed,
        log_level=log_level,
        admin_private_commands=_bool(get("ADMIN_PRIVATE_COMMANDS", "false"), "ADMIN_PRIVATE_COMMANDS"),
        allow_negative_balance=_bool(get("ALLOW_NEGATIVE_BALANCE", "false"), "ALLOW_NEGATIVE_BALANCE"),
        admin_events=events,
        daily_summary_hour=summary_hour,
        confirm_seconds=_positive_int(get("CONFIRM_SECONDS", "60"), "CONFIRM_SECONDS"),
        payout_max_cents=payout_max,
        payout_daily_max_cents=payout_daily_max,
        max_open_deposits=_positive_int(get("MAX_OPEN_DEPOSITS", "3"), "MAX_OPEN_DEPOSITS"),
        max_deposits_per_hour=_positive_int(get("MAX_DEPOSITS_PER_HOUR", "10"), "MAX_DEPOSITS_PER_HOUR"),
        redis_url=redis_url,
        redis_key_prefix=redis_prefix,
        operator_api_key=Secret(api_key) if api_key else None,
        api_rate_limit=_positive_int(get("API_RATE_LIMIT", "20"), "API_RATE_LIMIT",
                                     hint="requests per second per API key, e.g. 20"),
        link_ttl_hours=_positive_int(get("LINK_TTL_HOURS", "24"), "LINK_TTL_HOURS",
                                     hint="how many hours an account link stays valid, e.g. 24"),
        operator_webhook_url=operator_url,
        operator_webhook_secret=Secret(operator_secret) if operator_url else None,
        notify_charges=_bool(get("NOTIFY_CHARGES", "true"), "NOTIFY_CHARGES"),
        support_contact=_support_contact(get("SUPPORT_CONTACT")),
    )


_bool = parse_bool
_networks = parse_ip_networks
_usd = parse_usd_setting
_int = parse_int
_http_url = parse_http_url


def _positive_int(text: str, name: str, *, hint: str = "a whole number of seconds, e.g. 60") -> int:
    value = _int(text, name, hint=hint)
    if value <= 0:
        raise ConfigError(f"{name} must be above zero: {hint}")
    return value


def _port(text: str) -> int:
    value = _int(text, "WEB_PORT", hint="a TCP port, e.g. 8080")
    if not 0 < value < 65536:
        raise ConfigError(f"WEB_PORT={value} is not a TCP port (1-65535)")
    return value


def _redis_url(text: str) -> Secret:
    """redis://[:password@]host[:port][/db], rediss:// (TLS) or unix:///path?db=N. A Secret: it may hold a password."""
    parsed = urlparse(text)
    hint = "e.g. redis://127.0.0.1:6379/0 (the number is the Redis database)"
    if parsed.scheme not in ("redis", "rediss", "unix"):
        raise ConfigError(f"REDIS_URL must start with redis://, rediss:// or unix://, {hint}")
    if parsed.scheme != "unix":
        database = parsed.path.strip("/")
        if not parsed.hostname or (database and not database.isdigit()):
            raise ConfigError(f"REDIS_URL needs a host and, after it, at most a database number, {hint}")
        try:
            _ = parsed.port  # reading it raises on a port that is not a number
        except ValueError:
            raise ConfigError(f"REDIS_URL has a port that is not a number, {hint}") from None
    return Secret(text)


def _support_contact(text: str) -> str | None:
    """`@shop_support`, an e-mail or a link: one short line customers can act on."""
    if not text:
        return None
    if len(text) > 100 or any(c in text for c in "\r\n"):
        raise ConfigError(f"SUPPORT_CONTACT is {len(text)} characters or spans lines; give one short line, "
                          "e.g. SUPPORT_CONTACT=@shop_support")
    return text
