"""End to end: `python -m bot` as a real subprocess, talking HTTP to the fake Bot API and the fake SMSOnline.

Nothing in-process is shared with the bot: it reads its settings from the environment, keeps its state in an SQLite
file under tmp_path, and is stopped with SIGTERM like a service manager would.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.fakes.bot_api import FakeBotAPI
from tests.fakes.smsonline import FakeSMSOnline

ROOT = Path(__file__).resolve().parent.parent
ADMIN_CHAT = -1001234567890
TOKEN = "123456:TEST-token"
SMS_USER = "e2e-operator"
SMS_KEY = "e2e-secret-api-key-d41d8c"
USER = 777001

# Settings the bot reads; cleared from the inherited environment so the developer's shell can't change the test.
_BOT_VARS = ("BOT_TOKEN", "TELEGRAM_API_URL", "DATABASE_URL", "ADMIN_CHAT_ID", "ADMIN_USER_IDS", "PAYMENT_GATEWAY",
             "SMSONLINE_API_URL", "SMSONLINE_USER_ID", "SMSONLINE_API_KEY", "WEB_HOST", "WEB_PORT", "PUBLIC_URL",
             "RECONCILE_INTERVAL_SECONDS", "MIN_AMOUNT_USD", "MAX_AMOUNT_USD", "QUICK_AMOUNTS_USD", "DEFAULT_LOCALE",
             "ALLOWED_PAIRS", "LOG_LEVEL", "REDIS_URL", "REDIS_KEY_PREFIX", "TELEGRAM_WEBHOOK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bot_cwd(env: dict[str, str]) -> str:
    """The bot's working directory: the test's own folder (for SQLite, the database's), so a developer's own .env is
    never read."""
    if not env["DATABASE_URL"].startswith("sqlite:///"):
        return env["TEST_BOT_CWD"]
    return str(Path(env["DATABASE_URL"].removeprefix("sqlite:///")).parent)


def bot_env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _BOT_VARS}
    env.update({
        "BOT_TOKEN": TOKEN,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'bot.sqlite3'}",
        "ADMIN_CHAT_ID": str(ADMIN_CHAT),
        "PAYMENT_GATEWAY": "smsonline",
        "SMSONLINE_USER_ID": SMS_USER,
        "SMSONLINE_API_KEY": SMS_KEY,
        "RECONCILE_INTERVAL_SECONDS": "1",
        "WEB_PORT": str(free_port()),
        "PYTHONUNBUFFERED": "1",
        "TEST_BOT_CWD": str(tmp_path),  # where bot_cwd runs a bot whose database is not a file
        # Run outside the checkout (see BOT_CWD) but import this checkout's code.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    })
    env.update(settings)
    return env


class BotProcess:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @classmethod
    async def start(cls, env: dict[str, str], log_path: Path) -> BotProcess:
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "bot", cwd=bot_cwd(env), env=env,
                                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        return cls(proc, log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def stop(self, timeout: float = 10.0) -> int:
        """SIGTERM, then wait for the exit code (raises TimeoutError if it hangs)."""
        self.proc.send_signal(signal.SIGTERM)
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def find_button(api: FakeBotAPI, chat_id: int, label: str) -> tuple[int, str] | None:
    """(message_id, callback_data) of the newest bot message in the chat with a button whose text contains label."""
    for message in reversed(api.sent_to(chat_id)):
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if label in button.get("text", "") and "callback_data" in button:
                    return message["message_id"], button["callback_data"]
    return None


async def tap(api: FakeBotAPI, user: int, label: str, timeout: float = 10.0) -> None:
    message_id, data = await api.wait_for(lambda a: find_button(a, user, label), timeout)
    api.push_callback(user, data, message_id=message_id)


def text_of(message: dict[str, Any]) -> str:
    return message.get("text") or message.get("caption") or ""


def message_with(api: FakeBotAPI, chat_id: int, needle: str) -> dict[str, Any] | None:
    return next((m for m in reversed(api.sent_to(chat_id)) if needle in text_of(m)), None)


async def eventually(condition: Any, timeout: float) -> None:
    """Wait for a condition on a fake other than the Bot API (whose wait_for wakes only on Bot API calls)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(0.05)


def request_paths(fake: FakeSMSOnline, part: str) -> list[str]:
    return [r.path for r in fake.requests if part in r.path]


async def test_top_up_with_smsonline_from_start_to_paid(tmp_path: Path):
    log_path = tmp_path / "bot.log"
    bot: BotProcess | None = None
    try:
        async with FakeBotAPI() as api, FakeSMSOnline(user_id=SMS_USER, api_key=SMS_KEY) as fake:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL=fake.base_url,
                          LOG_LEVEL="DEBUG")
            bot = await BotProcess.start(env, log_path)
            # Started: it asked Telegram who it is (updates pushed from now on wait in the queue).
            await api.wait_for(lambda a: a.calls_of("getMe"), timeout=20)

            api.push_message(USER, "/start")
            await tap(api, USER, "Top up")
            await tap(api, USER, "USDT")
            await tap(api, USER, "TRON")
            await api.wait_for(lambda a: message_with(a, USER, "on TRON"), timeout=10)  # the amount question
            api.push_message(USER, "5.15")
            await api.wait_for(lambda a: message_with(a, USER, "$5.15") and find_button(a, USER, "Create"), 10)
            await tap(api, USER, "Create")

            photo = await api.wait_for_call("sendPhoto", lambda c: c.params.get("chat_id") == USER, timeout=15)
            order_id = fake.last_order_id()
            assert order_id is not None
            wallet = fake.deposits[order_id]
            assert request_paths(fake, "/cryptomus/direct/") == [
                f"/v3/customers/{SMS_USER}/cryptomus/direct/USDT/TRON/5.15"]
            caption = photo.params["caption"]
            assert wallet["to_address"] in caption
            assert wallet["amountInCrypto"] in caption
            assert photo.file("photo")  # the QR code was uploaded
            card_id = photo.result["message_id"]

            # Nothing is credited before SMSOnline says so, though the bot keeps asking.
            await eventually(lambda: len(request_paths(fake, f"/transaction/{order_id}")) >= 2, timeout=15)
            assert message_with(api, USER, "Payment received") is None

            fake.set_status(order_id, "paid")
            paid = await api.wait_for(lambda a: message_with(a, USER, "Payment received"), timeout=20)
            assert "$5.15" in text_of(paid)
            admin = await api.wait_for(lambda a: message_with(a, ADMIN_CHAT, "paid"), timeout=20)
            assert "$5.15" in text_of(admin) and "smsonline" in text_of(admin)
            card = await api.wait_for(
                lambda a: (m := a.messages.get((USER, card_id))) and "Paid" in text_of(m) and m, timeout=20)
            assert "$5.15" in text_of(card)
            assert wallet["to_address"] not in text_of(card)  # a paid card no longer invites paying

            # Credited once: a few more reconciler passes send nothing new.
            polls = len(request_paths(fake, f"/transaction/{order_id}"))
            await asyncio.sleep(2.5)
            assert len([m for m in api.sent_to(USER) if "Payment received" in text_of(m)]) == 1
            assert len(request_paths(fake, f"/transaction/{order_id}")) == polls  # paid: no more polling

            # The balance the user sees.
            api.push_message(USER, "/balance")
            shown = await api.wait_for(lambda a: message_with(a, USER, "Your balance"), timeout=10)
            assert "$5.15" in text_of(shown)

            code = await bot.stop(timeout=10)
            assert code == 0
        log = bot.log()
        assert "smsonline direct wallet answered 200" in log  # logs were captured, so the next check means something
        assert SMS_KEY not in log
        assert TOKEN not in log
        assert "Traceback" not in log
    finally:
        if bot is not None:
            await bot.kill()
            print(f"--- bot output ({log_path}) ---\n{bot.log()}")


async def test_deposit_made_before_a_restart_is_credited_by_the_next_process(tmp_path: Path):
    log_path = tmp_path / "bot.log"
    bots: list[BotProcess] = []
    try:
        async with FakeBotAPI() as api, FakeSMSOnline(user_id=SMS_USER, api_key=SMS_KEY) as fake:
            env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL=fake.base_url)
            bots.append(await BotProcess.start(env, log_path))
            api.push_message(USER, "/topup")
            await tap(api, USER, "USDT", timeout=20)
            await tap(api, USER, "BNB Smart Chain")
            await api.wait_for(lambda a: message_with(a, USER, "on BNB Smart Chain"), timeout=10)
            api.push_message(USER, "7")
            await tap(api, USER, "Create")
            photo = await api.wait_for_call("sendPhoto", lambda c: c.params.get("chat_id") == USER, timeout=15)
            card_id = photo.result["message_id"]
            order_id = fake.last_order_id()
            assert order_id is not None

            assert await bots[0].stop(timeout=10) == 0
            fake.set_status(order_id, "paid")  # paid while the bot was down

            bots.append(await BotProcess.start(env, log_path))
            paid = await api.wait_for(lambda a: message_with(a, USER, "Payment received"), timeout=20)
            assert "$7.00" in text_of(paid)
            await api.wait_for(lambda a: (m := a.messages.get((USER, card_id))) and "Paid" in text_of(m), 20)
            api.push_message(USER, "/balance")
            shown = await api.wait_for(lambda a: message_with(a, USER, "Your balance"), timeout=10)
            assert "$7.00" in text_of(shown)
            assert len([m for m in api.sent_to(USER) if "Payment received" in text_of(m)]) == 1
            assert await bots[1].stop(timeout=10) == 0
        log = bots[-1].log()
        assert "credited (credited 700" in log
        assert SMS_KEY not in log
    finally:
        for bot in bots:
            await bot.kill()
        if bots:
            print(f"--- bot output ({log_path}) ---\n{bots[-1].log()}")


def run_bot_expecting_exit(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot"], cwd=bot_cwd(env), env=env, capture_output=True, text=True,
                          timeout=60, stdin=subprocess.DEVNULL)


def test_missing_bot_token_exits_2_with_a_fix(tmp_path: Path):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9")
    del env["BOT_TOKEN"]
    result = run_bot_expecting_exit(env)
    print(result.stdout, result.stderr)
    assert result.returncode == 2
    assert "BOT_TOKEN" in result.stderr and "@BotFather" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bot.sqlite3").exists()  # refused before touching anything


@pytest.mark.parametrize(("name", "value"), [("MIN_AMOUNT_USD", "abc"), ("RECONCILE_INTERVAL_SECONDS", "soon")])
def test_bad_setting_exits_2_naming_it(tmp_path: Path, name: str, value: str):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9",
                  **{name: value})
    result = run_bot_expecting_exit(env)
    print(result.stdout, result.stderr)
    assert result.returncode == 2
    assert name in result.stderr
    assert "Traceback" not in result.stderr
    assert SMS_KEY not in result.stderr + result.stdout


def test_missing_smsonline_key_exits_2_naming_it(tmp_path: Path):
    env = bot_env(tmp_path, TELEGRAM_API_URL="http://127.0.0.1:9", SMSONLINE_API_URL="http://127.0.0.1:9")
    del env["SMSONLINE_API_KEY"]
    result = run_bot_expecting_exit(env)
    assert result.returncode == 2
    assert "SMSONLINE_API_KEY" in result.stderr


async def test_a_token_telegram_refuses_exits_2_with_a_fix(tmp_path: Path):
    async with FakeBotAPI() as api:
        api.fail_next("getMe", status=401, description="Unauthorized", count=5)
        env = bot_env(tmp_path, TELEGRAM_API_URL=api.base_url, SMSONLINE_API_URL="http://127.0.0.1:9")
        bot = await BotProcess.start(env, tmp_path / "bot.log")
        try:
            code = await asyncio.wait_for(bot.proc.wait(), 30)
        finally:
            await bot.kill()
        log = bot.log()
        print(log)
        assert code == 2
        assert "Telegram refused BOT_TOKEN" in log and "@BotFather" in log
        assert "Traceback" not in log and TOKEN not in log
