"""Settings from the environment (and .env), checked once at start-up with messages that say how to fix them."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlparse

from services.matrix import GATEWAY_NETWORK_CODES, ConfigPairError, Pair, parse_pair_filter
from services.money import AmountError, AmountLimits, parse_usd
from services.store.db import DEFAULT_DATABASE_URL, DatabaseURL
from services.webhooks import IPNetwork, parse_networks

GATEWAYS = ("sandbox", "smsonline", "cryptomus", "smartcloudpay")
# What the admin chat is told without asking; ADMIN_EVENTS picks among them.
ADMIN_EVENTS = ("paid", "review", "expired", "gateway", "webhook", "manual", "summary")
_TOKEN_RE = re.compile(r"[0-9]{1,20}:[A-Za-z0-9_-]{5,}", re.ASCII)


class ConfigError(Exception):
    """One line naming the variable, what is wrong with it, and how to fix it."""


@dataclass(frozen=True)
class Secret:
    """A credential that prints as *** so it can't leak through logs, reprs or tracebacks."""

    value: str = field(repr=False)

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Settings:
    bot_token: Secret
    telegram_api_url: str = "https://api.telegram.org"
    database_url: DatabaseURL = field(default_factory=lambda: DatabaseURL.parse(DEFAULT_DATABASE_URL))
    admin_chat_id: int | None = None
    admin_user_ids: frozenset[int] = frozenset()
    payment_gateway: str = "sandbox"
    smsonline_api_url: str = "https://api-x.smsonline.cloud"
    smsonline_user_id: str = ""
    smsonline_api_key: Secret = Secret("")
    smsonline_extra_methods: frozenset[str] = frozenset()
    smsonline_v2: bool = False
    smsonline_v2_api_url: str = "https://api.smsonline.cloud"
    cryptomus_api_url: str = "https://api.cryptomus.com"
    cryptomus_merchant_id: str = ""
    cryptomus_api_key: Secret = Secret("")
    cryptomus_webhook_ips: frozenset[IPNetwork] | None = None
    smartcloudpay_api_url: str = "https://www.smartcloudpay.com/api"
    smartcloudpay_api_key: Secret = Secret("")
    smartcloudpay_merchant_id: str = ""
    smartcloudpay_notify_email: str = ""
    smartcloudpay_pairs: frozenset[Pair] = frozenset()
    smartcloudpay_origin: str | None = None
    smartcloudpay_callback_token: Secret | None = None
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
    def get(name: str, default: str = "") -> str:
        return env.get(name, default).strip()

    token = get("BOT_TOKEN")
    if not token:
        raise ConfigError("BOT_TOKEN is not set: create a bot with @BotFather in Telegram (/newbot), "
                          "then put the token it gives you in .env as BOT_TOKEN=123456:ABC...")
    if not _TOKEN_RE.fullmatch(token):
        raise ConfigError("BOT_TOKEN does not look like a bot token (expected digits, a colon, then letters, "
                          "e.g. 123456:ABC-def); copy it again from @BotFather")

    gateway = get("PAYMENT_GATEWAY", "sandbox").lower()
    if gateway not in GATEWAYS:
        raise ConfigError(f"PAYMENT_GATEWAY={gateway!r} is not one of: {', '.join(GATEWAYS)}")

    smsonline_user = get("SMSONLINE_USER_ID")
    smsonline_key = get("SMSONLINE_API_KEY")
    if gateway == "smsonline":
        for name, value in (("SMSONLINE_USER_ID", smsonline_user), ("SMSONLINE_API_KEY", smsonline_key)):
            if not value:
                raise ConfigError(f"{name} is required when PAYMENT_GATEWAY=smsonline: copy it from your "
                                  "SMSOnline account's API settings")

    _require_for(gateway, "cryptomus", env, ("CRYPTOMUS_MERCHANT_ID", "the merchant UUID from Cryptomus' merchant "
                                             "settings"), ("CRYPTOMUS_API_KEY", "the merchant's payment API key"))
    _require_for(gateway, "smartcloudpay", env, ("SMARTCLOUDPAY_API_KEY", "the sk_... key from the Merchant "
                                                 "Dashboard"), ("SMARTCLOUDPAY_MERCHANT_ID", "your merchant id"),
                 ("SMARTCLOUDPAY_NOTIFY_EMAIL", "the address Smart CloudPay sends invoice notices to"))

    telegram_webhook = _bool(get("TELEGRAM_WEBHOOK", "false"), "TELEGRAM_WEBHOOK")
    public_url = _http_url(get("PUBLIC_URL"), "PUBLIC_URL") if get("PUBLIC_URL") else None
    if telegram_webhook and (public_url is None or not public_url.startswith("https://")):
        raise ConfigError("TELEGRAM_WEBHOOK=true needs PUBLIC_URL set to the https:// address Telegram can reach "
                          "(e.g. https://bot.example.com); or leave TELEGRAM_WEBHOOK=false for long polling")
    webhook_secret = get("TELEGRAM_WEBHOOK_SECRET")
    if webhook_secret and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", webhook_secret):
        raise ConfigError("TELEGRAM_WEBHOOK_SECRET may use only letters, digits, _ and - (1 to 256 characters); "
                          "or leave it empty and the bot generates one")
    callback_token = get("SMARTCLOUDPAY_CALLBACK_TOKEN")
    if callback_token and not re.fullmatch(r"[A-Za-z0-9_-]{16,128}", callback_token):
        raise ConfigError("SMARTCLOUDPAY_CALLBACK_TOKEN must be 16 to 128 letters, digits, _ or -; "
                          "or leave it empty and the bot generates one")
    try:
        scp_pairs = parse_pair_filter(get("SMARTCLOUDPAY_PAIRS", "USDT:BSC,USDT:TRON,BNB:BSC")) or frozenset()
    except ConfigPairError as exc:
        raise ConfigError(f"SMARTCLOUDPAY_PAIRS: {exc}; write pairs like USDT:BSC,USDT:TRON,BNB:BSC") from None
    unsupported = [str(p) for p in scp_pairs if p.network not in GATEWAY_NETWORK_CODES["smartcloudpay"]]
    if unsupported:
        raise ConfigError(f"SMARTCLOUDPAY_PAIRS: no Smart CloudPay network for {', '.join(sorted(unsupported))} "
                          f"(it has: {', '.join(GATEWAY_NETWORK_CODES['smartcloudpay'])})")

    extra_methods = frozenset(m.strip().lower() for m in get("SMSONLINE_EXTRA_METHODS").split(",") if m.strip())
    unknown_methods = sorted(extra_methods - {"page", "card"})
    if unknown_methods:
        raise ConfigError(f"SMSONLINE_EXTRA_METHODS: unknown {', '.join(unknown_methods)}; use page, card or both "
                          "(page: any coin on the Cryptomus payment page; card: Pay4bit)")

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
        smsonline_api_url=_http_url(get("SMSONLINE_API_URL", "https://api-x.smsonline.cloud"), "SMSONLINE_API_URL"),
        smsonline_user_id=smsonline_user,
        smsonline_api_key=Secret(smsonline_key),
        smsonline_extra_methods=extra_methods,
        smsonline_v2=_bool(get("SMSONLINE_V2", "false"), "SMSONLINE_V2"),
        smsonline_v2_api_url=_http_url(get("SMSONLINE_V2_API_URL", "https://api.smsonline.cloud"),
                                       "SMSONLINE_V2_API_URL"),
        cryptomus_api_url=_http_url(get("CRYPTOMUS_API_URL", "https://api.cryptomus.com"), "CRYPTOMUS_API_URL"),
        cryptomus_merchant_id=get("CRYPTOMUS_MERCHANT_ID"),
        cryptomus_api_key=Secret(get("CRYPTOMUS_API_KEY")),
        cryptomus_webhook_ips=_networks(get("CRYPTOMUS_WEBHOOK_IPS"), "CRYPTOMUS_WEBHOOK_IPS") or None,
        smartcloudpay_api_url=_http_url(get("SMARTCLOUDPAY_API_URL", "https://www.smartcloudpay.com/api"),
                                        "SMARTCLOUDPAY_API_URL"),
        smartcloudpay_api_key=Secret(get("SMARTCLOUDPAY_API_KEY")),
        smartcloudpay_merchant_id=get("SMARTCLOUDPAY_MERCHANT_ID"),
        smartcloudpay_notify_email=get("SMARTCLOUDPAY_NOTIFY_EMAIL"),
        smartcloudpay_pairs=scp_pairs,
        smartcloudpay_origin=get("SMARTCLOUDPAY_ORIGIN") or None,
        smartcloudpay_callback_token=Secret(callback_token) if callback_token else None,
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


def _require_for(gateway: str, needed_by: str, env: Mapping[str, str], *names: tuple[str, str]) -> None:
    if gateway != needed_by:
        return
    for name, what in names:
        if not env.get(name, "").strip():
            raise ConfigError(f"{name} is required when PAYMENT_GATEWAY={needed_by}: set it to {what}")


def _bool(text: str, name: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}={text!r} is not true or false")


def _networks(text: str, name: str) -> frozenset[IPNetwork]:
    try:
        return parse_networks(text)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}; write addresses or networks like 91.227.144.54, 10.0.0.0/8") from None


def _usd(text: str, name: str) -> int:
    try:
        return parse_usd(text)
    except AmountError:
        raise ConfigError(f"{name}={text!r} is not a positive USD amount; write it like 5 or 12.50") from None


def _int(text: str, name: str, *, hint: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"{name}={text!r} is not a whole number: {hint}") from None


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


def _http_url(text: str, name: str) -> str:
    parsed = urlparse(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{name}={text!r} is not an http(s) URL, e.g. https://example.com")
    return text.rstrip("/")


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
