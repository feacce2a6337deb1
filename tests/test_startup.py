"""Start-up mistakes, seen as an operator sees them: the real `python -m bot` prints one line and exits 2."""
from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
from pathlib import Path

from bot.config import load_settings
from bot.usage import usage
from tests.test_e2e import BotProcess, bot_cwd, bot_env, run_bot_expecting_exit
from tests.fakes.bot_api import FakeBotAPI


def one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> str:
    print(result.stdout, result.stderr)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0]
    return lines[0]


def test_a_positive_admin_chat_id_is_refused_with_how_to_find_the_group_id(tmp_path: Path):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9",
                  ADMIN_CHAT_ID="123456789")
    one_line_error(run_bot_expecting_exit(env), "ADMIN_CHAT_ID=123456789", "negative")
    assert not (tmp_path / "bot.sqlite3").exists()


def test_a_database_url_without_a_file_name_is_one_line(tmp_path: Path):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9")
    env["DATABASE_URL"] = "sqlite:///"
    result = subprocess.run([sys.executable, "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=60, stdin=subprocess.DEVNULL)
    one_line_error(result, "DATABASE_URL")


async def run_against_fake_telegram(env: dict[str, str], tmp_path: Path) -> tuple[int, str]:
    log_path = tmp_path / "bot.log"
    with log_path.open("ab") as log:  # started in tmp_path: the database's folder may be the mistake under test
        proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=tmp_path, env=env,
                                                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    bot = BotProcess(proc, log_path)
    try:
        code = await asyncio.wait_for(bot.proc.wait(), 30)
    finally:
        await bot.kill()
    return code, bot.log()


def assert_one_line(code: int, log: str, *needles: str) -> None:
    print(log)
    assert code == 2
    assert "Traceback" not in log
    lines = [line for line in log.splitlines() if line.strip() and "INFO" not in line and "WARNING" not in line]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0]


async def test_a_database_the_bot_cannot_create_is_one_line(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a folder")
    async with FakeBotAPI() as api:
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL="http://127.0.0.1:9")
        env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'a-file' / 'bot.sqlite3'}"
        code, log = await run_against_fake_telegram({**env}, tmp_path)
    assert_one_line(code, log, "DATABASE_URL", "cannot open the database", "a-file")


async def test_a_file_that_is_not_a_database_is_one_line(tmp_path: Path):
    (tmp_path / "bot.sqlite3").write_bytes(b"these are someone's notes, not a database" * 100)
    async with FakeBotAPI() as api:
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL="http://127.0.0.1:9")
        code, log = await run_against_fake_telegram(env, tmp_path)
    assert_one_line(code, log, "DATABASE_URL", "not a database")


async def test_a_port_in_use_is_one_line_naming_web_port(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with FakeBotAPI() as api:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL="http://127.0.0.1:9",
                          WEB_HOST="127.0.0.1", WEB_PORT=str(port))
            code, log = await run_against_fake_telegram(env, tmp_path)
    assert_one_line(code, log, f"WEB_PORT={port}", "in use")


async def test_a_refused_token_leaves_no_database_file(tmp_path: Path):
    async with FakeBotAPI() as api:
        api.fail_next("getMe", status=401, description="Unauthorized", count=5)
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL="http://127.0.0.1:9")
        code, log = await run_against_fake_telegram(env, tmp_path)
    assert_one_line(code, log, "BOT_TOKEN", "@BotFather")
    assert not (tmp_path / "bot.sqlite3").exists()  # checked before anything was created
    assert "listening on" not in log


def test_help_prints_the_commands_and_every_setting_without_starting(tmp_path: Path):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "bot", "--help"], cwd=bot_cwd(env), env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "python -m bot coupons" in result.stdout and "BOT_TOKEN" in result.stdout
    assert "DEFAULT_LOCALE  (default: en)" in result.stdout
    assert not (tmp_path / "bot.sqlite3").exists()


def test_help_lists_every_setting_the_bot_reads():
    read: set[str] = set()

    class Recording(dict[str, str]):
        def get(self, key, default=None):  # type: ignore[override]
            read.add(key)
            return super().get(key, default)

    for gateway, extra in (("sandbox", {}), ("smsonline", {"SMSONLINE_USER_ID": "u", "SMSONLINE_API_KEY": "k"}),
                           ("cryptomus", {"CRYPTOMUS_MERCHANT_ID": "m", "CRYPTOMUS_API_KEY": "k"}),
                           ("smartcloudpay", {"SMARTCLOUDPAY_API_KEY": "k", "SMARTCLOUDPAY_MERCHANT_ID": "m",
                                              "SMARTCLOUDPAY_NOTIFY_EMAIL": "a@b.c"})):
        load_settings(Recording(BOT_TOKEN="123:abcdef", PAYMENT_GATEWAY=gateway, **extra))
    text = usage()
    assert read and not [name for name in sorted(read) if f"  {name}" not in text]


def test_help_lists_every_command_python_m_bot_takes():
    main = (Path(__file__).resolve().parent.parent / "bot" / "__main__.py").read_text(encoding="utf-8")
    commands = re.findall(r'args\[:1\] == \["([a-z-]+)"\]', main)
    assert "coupons" in commands  # the scan works
    text = usage()
    assert [c for c in commands if f"python -m bot {c}" not in text] == []


def test_an_unknown_command_is_one_line(tmp_path: Path):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9")
    result = subprocess.run([sys.executable, "-m", "bot", "strat"], cwd=bot_cwd(env), env=env, capture_output=True,
                            text=True, timeout=60, stdin=subprocess.DEVNULL)
    one_line_error(result, "strat", "--help")


async def test_the_bot_describes_itself_in_every_shipped_language_and_keeps_the_operators_text(tmp_path: Path):
    async with FakeBotAPI() as api:
        api.short_descriptions[""] = "Acme VPN top-ups"  # what the operator wrote in @BotFather
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="sandbox", WEB_HOST="127.0.0.1")
        bot = await BotProcess.start(env, tmp_path / "bot.log")
        try:
            await api.wait_for(lambda a: len(a.descriptions) == 2 and "ru" in a.short_descriptions, timeout=30)
            assert await bot.stop(timeout=10) == 0
        finally:
            await bot.kill()
            print(bot.log())
    assert api.descriptions[""].startswith("Top up your balance with crypto.")  # English is the default language
    assert api.descriptions["ru"].startswith("Пополнение баланса криптовалютой.")
    assert api.short_descriptions["ru"].startswith("Пополнение баланса криптовалютой")
    assert api.short_descriptions[""] == "Acme VPN top-ups"  # not overwritten
    assert [c.params.get("language_code") for c in api.calls_of("setMyShortDescription")] == ["ru"]


def test_the_coupon_command_with_a_database_it_cannot_open_is_one_line(tmp_path: Path):
    (tmp_path / "a-file").write_text("not a folder")
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9")
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'a-file' / 'bot.sqlite3'}"
    result = subprocess.run([sys.executable, "-m", "bot", "coupons", "list"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    one_line_error(result, "DATABASE_URL", "cannot open the database")


async def test_allowed_pairs_that_leave_nothing_to_offer_is_one_line(tmp_path: Path):
    async with FakeBotAPI() as api:
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, PAYMENT_GATEWAY="smartcloudpay",
                      SMARTCLOUDPAY_API_URL="http://127.0.0.1:9", SMARTCLOUDPAY_API_KEY="sk_test",
                      SMARTCLOUDPAY_MERCHANT_ID="m", SMARTCLOUDPAY_NOTIFY_EMAIL="ops@example.com",
                      ALLOWED_PAIRS="BTC")  # Smart CloudPay offers only the pairs in SMARTCLOUDPAY_PAIRS
        code, log = await run_against_fake_telegram(env, tmp_path)
    assert_one_line(code, log, "ALLOWED_PAIRS", "smartcloudpay")
