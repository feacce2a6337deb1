"""Start-up configuration: good defaults, and one clear line for each mistake."""
from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings
from services.gateways.cryptomus import CryptomusSettings
from services.gateways.smartcloudpay import SmartCloudPaySettings
from services.gateways.smsonline import SMSOnlineSettings

BASE = {"BOT_TOKEN": "123456:ABC-def_ghi"}
# A gateway's own variables are read only when it is the chosen one.
SMS = {"PAYMENT_GATEWAY": "smsonline", "SMSONLINE_USER_ID": "u", "SMSONLINE_API_KEY": "k"}
CRYPTOMUS = {"PAYMENT_GATEWAY": "cryptomus", "CRYPTOMUS_MERCHANT_ID": "m", "CRYPTOMUS_API_KEY": "k"}
SCP = {"PAYMENT_GATEWAY": "smartcloudpay", "SMARTCLOUDPAY_API_KEY": "k", "SMARTCLOUDPAY_MERCHANT_ID": "m",
       "SMARTCLOUDPAY_NOTIFY_EMAIL": "ops@example.com"}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.payment_gateway == "sandbox" and s.telegram_api_url == "https://api.telegram.org"
    assert str(s.database_url.path) == "data/bot.sqlite3" and s.web_port == 8080 and s.web_host == "0.0.0.0"
    assert s.reconcile_interval_seconds == 60 and s.default_locale == "en"
    assert (s.amount_limits.min_cents, s.amount_limits.max_cents) == (100, 1_000_000)
    assert s.admin_chat_id is None
    sms = load_settings({**BASE, "PAYMENT_GATEWAY": "smsonline", "SMSONLINE_USER_ID": "u1", "SMSONLINE_API_KEY": "k"})
    assert isinstance(sms.gateway, SMSOnlineSettings) and sms.gateway.api_url == "https://api-x.smsonline.cloud"


def test_secrets_never_print() -> None:
    s = load_settings({**BASE, "PAYMENT_GATEWAY": "smsonline", "SMSONLINE_USER_ID": "u1",
                       "SMSONLINE_API_KEY": "very-secret-key"})
    assert "very-secret-key" not in repr(s) and "ABC-def_ghi" not in repr(s) and "ABC-def_ghi" not in str(s.bot_token)
    assert isinstance(s.gateway, SMSOnlineSettings) and s.gateway.api_key.value == "very-secret-key"


@pytest.mark.parametrize("env, names", [
    ({}, ["BOT_TOKEN", "@BotFather"]),
    ({"BOT_TOKEN": "not-a-token"}, ["BOT_TOKEN"]),
    ({**BASE, "PAYMENT_GATEWAY": "paypal"}, ["PAYMENT_GATEWAY", "sandbox"]),
    ({**BASE, "PAYMENT_GATEWAY": "smsonline"}, ["SMSONLINE_USER_ID"]),
    ({**BASE, "PAYMENT_GATEWAY": "smsonline", "SMSONLINE_USER_ID": "u"}, ["SMSONLINE_API_KEY"]),
    ({**BASE, "MIN_AMOUNT_USD": "abc"}, ["MIN_AMOUNT_USD"]),
    ({**BASE, "MIN_AMOUNT_USD": "100", "MAX_AMOUNT_USD": "10"}, ["MIN_AMOUNT_USD", "MAX_AMOUNT_USD"]),
    ({**BASE, "ADMIN_CHAT_ID": "admins"}, ["ADMIN_CHAT_ID"]),
    ({**BASE, "ADMIN_CHAT_ID": "123456789"}, ["ADMIN_CHAT_ID", "negative"]),
    ({**BASE, "DATABASE_URL": "sqlite:///"}, ["DATABASE_URL"]),
    ({**BASE, "ADMIN_USER_IDS": "1,x"}, ["ADMIN_USER_IDS"]),
    ({**BASE, "WEB_PORT": "99999"}, ["WEB_PORT"]),
    ({**BASE, "RECONCILE_INTERVAL_SECONDS": "0"}, ["RECONCILE_INTERVAL_SECONDS"]),
    ({**BASE, "DEFAULT_LOCALE": "de"}, ["DEFAULT_LOCALE"]),
    ({**BASE, "ALLOWED_PAIRS": "USDT:MOON"}, ["ALLOWED_PAIRS", "MOON"]),
    ({**BASE, "TELEGRAM_API_URL": "localhost:8081"}, ["TELEGRAM_API_URL"]),
    ({**BASE, "DATABASE_URL": "mysql://x"}, ["DATABASE_URL"]),
    ({**BASE, "DATABASE_URL": "postgresql+asyncpg://u@h/db"}, ["DATABASE_URL", "driver"]),
    ({**BASE, "DATABASE_URL": "postgresql://u@h:port/db"}, ["DATABASE_URL", "port"]),
    ({**BASE, "PUBLIC_URL": "bot.example.com"}, ["PUBLIC_URL"]),
    ({**BASE, "PAYMENT_GATEWAY": "cryptomus"}, ["CRYPTOMUS_MERCHANT_ID"]),
    ({**BASE, "PAYMENT_GATEWAY": "cryptomus", "CRYPTOMUS_MERCHANT_ID": "m"}, ["CRYPTOMUS_API_KEY", "payment"]),
    ({**BASE, "PAYMENT_GATEWAY": "smartcloudpay", "SMARTCLOUDPAY_API_KEY": "k", "SMARTCLOUDPAY_MERCHANT_ID": "m"},
     ["SMARTCLOUDPAY_NOTIFY_EMAIL"]),
    ({**BASE, **SCP, "SMARTCLOUDPAY_PAIRS": "BTC"}, ["SMARTCLOUDPAY_PAIRS", "BTC"]),
    ({**BASE, **CRYPTOMUS, "CRYPTOMUS_WEBHOOK_IPS": "not-an-ip"}, ["CRYPTOMUS_WEBHOOK_IPS"]),
    ({**BASE, "TRUSTED_PROXIES": "10.0.0.0/33"}, ["TRUSTED_PROXIES"]),
    ({**BASE, "TELEGRAM_WEBHOOK": "maybe"}, ["TELEGRAM_WEBHOOK"]),
    ({**BASE, "REDIS_URL": "127.0.0.1:6379"}, ["REDIS_URL", "redis://"]),
    ({**BASE, "REDIS_URL": "redis://127.0.0.1:6379/cache"}, ["REDIS_URL", "database number"]),
    ({**BASE, "REDIS_URL": "redis://127.0.0.1:port/0"}, ["REDIS_URL", "port"]),
    ({**BASE, "REDIS_KEY_PREFIX": "has space"}, ["REDIS_KEY_PREFIX"]),
    ({**BASE, "TELEGRAM_WEBHOOK": "true"}, ["PUBLIC_URL", "https"]),
    ({**BASE, "TELEGRAM_WEBHOOK": "true", "PUBLIC_URL": "http://bot.example.com"}, ["PUBLIC_URL", "https"]),
    ({**BASE, "TELEGRAM_WEBHOOK_SECRET": "has spaces"}, ["TELEGRAM_WEBHOOK_SECRET"]),
    ({**BASE, **SCP, "SMARTCLOUDPAY_CALLBACK_TOKEN": "short"}, ["SMARTCLOUDPAY_CALLBACK_TOKEN"]),
    ({**BASE, **SMS, "SMSONLINE_EXTRA_METHODS": "page,paypal"}, ["SMSONLINE_EXTRA_METHODS", "paypal"]),
    ({**BASE, **SMS, "SMSONLINE_V2": "sometimes"}, ["SMSONLINE_V2"]),
    ({**BASE, "ADMIN_EVENTS": "paid,gossip"}, ["ADMIN_EVENTS", "gossip"]),
    ({**BASE, "DAILY_SUMMARY_HOUR": "24"}, ["DAILY_SUMMARY_HOUR"]),
    ({**BASE, "PAYOUT_MAX_USD": "lots"}, ["PAYOUT_MAX_USD"]),
    ({**BASE, "CONFIRM_SECONDS": "0"}, ["CONFIRM_SECONDS"]),
    ({**BASE, "ALLOW_NEGATIVE_BALANCE": "perhaps"}, ["ALLOW_NEGATIVE_BALANCE"]),
])
def test_each_mistake_is_named(env: dict[str, str], names: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env)
    message = str(info.value)
    assert "\n" not in message
    for name in names:
        assert name in message


def test_admin_ids_and_pairs_parse() -> None:
    s = load_settings({**BASE, "ADMIN_USER_IDS": "1, 2,3", "ADMIN_CHAT_ID": "-100123", "ALLOWED_PAIRS": "BTC",
                       "QUICK_AMOUNTS_USD": "5, 12.50 20000", "DATABASE_URL": "sqlite:////tmp/x.db"})
    assert s.admin_user_ids == {1, 2, 3} and s.admin_chat_id == -100123
    assert s.quick_amounts_cents == (500, 1250)  # 20000 is above MAX_AMOUNT_USD, so it is not offered
    assert str(s.database_url.path) == "/tmp/x.db"


def test_gateway_settings_parse() -> None:
    s = load_settings({**BASE, "PAYMENT_GATEWAY": "cryptomus", "CRYPTOMUS_MERCHANT_ID": "m-1",
                       "CRYPTOMUS_API_KEY": "payment-key", "CRYPTOMUS_WEBHOOK_IPS": "91.227.144.54",
                       "TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/8", "TELEGRAM_WEBHOOK": "true",
                       "PUBLIC_URL": "https://bot.example.com/"})
    assert s.payment_gateway == "cryptomus" and "payment-key" not in repr(s)
    assert isinstance(s.gateway, CryptomusSettings) and s.gateway.webhook_ips is not None
    assert [str(n) for n in s.gateway.webhook_ips] == ["91.227.144.54/32"]
    assert sorted(str(n) for n in s.trusted_proxies) == ["10.0.0.0/8", "127.0.0.1/32"]
    assert s.telegram_webhook and s.public_url == "https://bot.example.com"
    scp = load_settings({**BASE, "PAYMENT_GATEWAY": "smartcloudpay", "SMARTCLOUDPAY_API_KEY": "sk_1",
                         "SMARTCLOUDPAY_MERCHANT_ID": "m", "SMARTCLOUDPAY_NOTIFY_EMAIL": "ops@example.com"})
    assert isinstance(scp.gateway, SmartCloudPaySettings)
    assert {str(p) for p in scp.gateway.pairs} == {"USDT/BSC", "USDT/TRON", "BNB/BSC"}


def test_user_limits() -> None:
    s = load_settings(BASE)
    assert (s.max_open_deposits, s.max_deposits_per_hour) == (3, 10)
    with pytest.raises(ConfigError, match="MAX_OPEN_DEPOSITS"):
        load_settings({**BASE, "MAX_OPEN_DEPOSITS": "0"})


def test_redis_url_takes_a_database_number_and_never_prints_its_password() -> None:
    s = load_settings({**BASE, "REDIS_URL": "redis://:hunter2@10.0.0.5:6380/3", "REDIS_KEY_PREFIX": "shop-a"})
    assert s.redis_url is not None and s.redis_url.value == "redis://:hunter2@10.0.0.5:6380/3"
    assert "hunter2" not in repr(s) and s.redis_key_prefix == "shop-a"
    assert load_settings(BASE).redis_url is None  # without it: one process, state in the database, as before


@pytest.mark.parametrize("url", [
    "postgresql://user:hunter2@db.example:5432/bot",
    "postgres://user:hunter2@db.example/bot",
    "postgresql://postgres@/test?host=/var/run/postgresql",
    "postgresql:///test?host=/var/run/postgresql&sslmode=disable",
])
def test_postgresql_urls_are_taken_as_asyncpg_takes_them_and_never_printed(url: str) -> None:
    s = load_settings({**BASE, "DATABASE_URL": url})
    assert s.database_url.dialect == "postgresql" and s.database_url.dsn == url
    assert "hunter2" not in repr(s) and "hunter2" not in s.database_url.safe()
