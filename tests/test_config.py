"""Start-up configuration: good defaults, and one clear line for each mistake."""
from __future__ import annotations

import pytest

from bot.config import ConfigError, load_settings

BASE = {"BOT_TOKEN": "123456:ABC-def_ghi"}


def test_defaults() -> None:
    s = load_settings(BASE)
    assert s.payment_gateway == "sandbox" and s.telegram_api_url == "https://api.telegram.org"
    assert str(s.database_path) == "data/bot.sqlite3" and s.web_port == 8080 and s.web_host == "0.0.0.0"
    assert s.reconcile_interval_seconds == 60 and s.default_locale == "en"
    assert (s.amount_limits.min_cents, s.amount_limits.max_cents) == (100, 1_000_000)
    assert s.smsonline_api_url == "https://api-x.smsonline.cloud" and s.admin_chat_id is None


def test_secrets_never_print() -> None:
    s = load_settings({**BASE, "PAYMENT_GATEWAY": "smsonline", "SMSONLINE_USER_ID": "u1",
                       "SMSONLINE_API_KEY": "very-secret-key"})
    assert "very-secret-key" not in repr(s) and "ABC-def_ghi" not in repr(s) and "ABC-def_ghi" not in str(s.bot_token)
    assert s.smsonline_api_key.value == "very-secret-key"


@pytest.mark.parametrize("env, names", [
    ({}, ["BOT_TOKEN", "@BotFather"]),
    ({"BOT_TOKEN": "not-a-token"}, ["BOT_TOKEN"]),
    ({**BASE, "PAYMENT_GATEWAY": "paypal"}, ["PAYMENT_GATEWAY", "sandbox"]),
    ({**BASE, "PAYMENT_GATEWAY": "smsonline"}, ["SMSONLINE_USER_ID"]),
    ({**BASE, "PAYMENT_GATEWAY": "smsonline", "SMSONLINE_USER_ID": "u"}, ["SMSONLINE_API_KEY"]),
    ({**BASE, "MIN_AMOUNT_USD": "abc"}, ["MIN_AMOUNT_USD"]),
    ({**BASE, "MIN_AMOUNT_USD": "100", "MAX_AMOUNT_USD": "10"}, ["MIN_AMOUNT_USD", "MAX_AMOUNT_USD"]),
    ({**BASE, "ADMIN_CHAT_ID": "admins"}, ["ADMIN_CHAT_ID"]),
    ({**BASE, "ADMIN_USER_IDS": "1,x"}, ["ADMIN_USER_IDS"]),
    ({**BASE, "WEB_PORT": "99999"}, ["WEB_PORT"]),
    ({**BASE, "RECONCILE_INTERVAL_SECONDS": "0"}, ["RECONCILE_INTERVAL_SECONDS"]),
    ({**BASE, "DEFAULT_LOCALE": "de"}, ["DEFAULT_LOCALE"]),
    ({**BASE, "ALLOWED_PAIRS": "USDT:MOON"}, ["ALLOWED_PAIRS", "MOON"]),
    ({**BASE, "TELEGRAM_API_URL": "localhost:8081"}, ["TELEGRAM_API_URL"]),
    ({**BASE, "DATABASE_URL": "postgres://x"}, ["DATABASE_URL"]),
    ({**BASE, "PUBLIC_URL": "bot.example.com"}, ["PUBLIC_URL"]),
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
    assert str(s.database_path) == "/tmp/x.db"
