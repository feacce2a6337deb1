"""Shared helpers for the benchmarks: machine description, percentiles, verdict lines, a recording Bot API session.

Benchmarks are never part of the test suite's pass/fail: they print figures and PASS/MISS against the targets in
the issue, and always exit 0 (unless they crash).
"""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:  # `python bench/x.py` as well as `python -m bench.x`
    sys.path.insert(0, ROOT)


def machine() -> str:
    """One line: cores, CPU model, Python, platform, load average (others may share the machine)."""
    model = "?"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "?"
    return (f"machine: {os.cpu_count()} cores, {model}; Python {platform.python_version()}; "
            f"{platform.system()} {platform.release()}; load average {load}")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of unsorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def line(label: str, value: str, target: str | None = None, ok: bool | None = None) -> str:
    text = f"  {label:<44} {value}"
    if target is not None:
        text += f"   (target {target}: {verdict(bool(ok))})"
    return text


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def header(title: str) -> None:
    print(f"== {title}")
    print(machine())
    sys.stdout.flush()


# --- servers in processes of their own, and PostgreSQL schemas of their own ------------------------------------------

def start_server(module: str, args: list[str]) -> subprocess.Popen[str]:
    """`python -m <module> <args>` as a server process; returns once it printed READY (see `until_stdin_closes`)."""
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    ready = proc.stdout.readline()
    if ready.strip() != "READY":
        proc.kill()
        raise RuntimeError(f"server {module} {args} did not start: {ready!r}")
    return proc


def stop_server(proc: subprocess.Popen[str]) -> None:
    """Close its stdin (the server's signal to shut down cleanly); kill it if it takes longer than 30 s."""
    assert proc.stdin is not None
    proc.stdin.close()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def until_stdin_closes() -> None:
    """In a server process: say READY, then serve until the parent closes our stdin."""
    print("READY", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


async def pg_schema(url: str, schema: str, *, create: bool) -> str:
    """Create (or drop) a benchmark's own PostgreSQL schema; the URL that puts the bot in it."""
    import asyncpg

    from tests.conftest import with_search_path

    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE SCHEMA {schema}" if create else f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
    return with_search_path(url, schema)


# --- a Bot API session that answers in-process and records what the bot sent --------------------------------------

def recording_session() -> Any:
    """An aiogram session with no network: each request is serialised the way the aiohttp session does it
    (model_dump + prepare_value), counted, and answered with a plausible result that goes through aiogram's own
    response parsing (json + pydantic). Keeps each chat's latest messages so a driver can tap their buttons.
    """
    from aiogram.client.session.base import BaseSession  # here: importing bench.common needs no aiogram

    class _Session(BaseSession):
        def __init__(self) -> None:
            super().__init__()
            self.calls = 0
            self.by_method: dict[str, int] = {}
            self._ids = itertools.count(1000)
            # chat id -> {message_id: message dict}; only the latest few kept
            self.messages: dict[int, dict[int, dict[str, Any]]] = {}

        async def close(self) -> None:
            pass

        async def stream_content(self, *a: Any, **kw: Any):  # pragma: no cover - not used
            yield b""

        async def make_request(self, bot: Any, method: Any, timeout: int | None = None) -> Any:
            files: dict[str, Any] = {}
            params: dict[str, Any] = {}
            for key, value in method.model_dump(warnings=False).items():
                value = self.prepare_value(value, bot=bot, files=files)
                if value:
                    params[key] = value
            name = method.__api_method__
            self.calls += 1
            self.by_method[name] = self.by_method.get(name, 0) + 1
            result = self._result(name, params)
            await asyncio.sleep(0)  # a real session yields to the loop at least once
            response = self.check_response(bot=bot, method=method, status_code=200,
                                           content=json.dumps({"ok": True, "result": result}))
            return response.result

        def _result(self, name: str, params: dict[str, Any]) -> Any:
            chat_id = params.get("chat_id")
            markup = params.get("reply_markup")
            markup = json.loads(markup) if isinstance(markup, str) else markup
            if name in ("sendMessage", "sendPhoto", "sendDocument"):
                cid = int(chat_id)
                msg: dict[str, Any] = {
                    "message_id": next(self._ids), "date": int(time.time()),
                    "chat": {"id": cid, "type": "private" if cid > 0 else "supergroup", "first_name": "U"},
                    "from": {"id": 1000, "is_bot": True, "first_name": "Bench Bot", "username": "bench_bot"},
                }
                if name == "sendMessage":
                    msg["text"] = params.get("text", "")
                elif name == "sendPhoto":
                    msg["photo"] = [{"file_id": "p", "file_unique_id": "p", "width": 300, "height": 300}]
                    msg["caption"] = params.get("caption", "")
                else:
                    msg["document"] = {"file_id": "d", "file_unique_id": "d"}
                if markup:
                    msg["reply_markup"] = markup
                self._keep(cid, msg)
                return msg
            if name in ("editMessageText", "editMessageCaption", "editMessageReplyMarkup"):
                cid, mid = int(chat_id), int(params["message_id"])
                msg = dict(self.messages.get(cid, {}).get(mid) or {
                    "message_id": mid, "date": int(time.time()),
                    "chat": {"id": cid, "type": "private", "first_name": "U"},
                    "from": {"id": 1000, "is_bot": True, "first_name": "Bench Bot"}})
                if name == "editMessageText":
                    msg["text"] = params.get("text", "")
                elif name == "editMessageCaption":
                    msg["caption"] = params.get("caption", "")
                msg.pop("reply_markup", None)
                if markup:
                    msg["reply_markup"] = markup
                self._keep(cid, msg)
                return msg
            if name == "getMe":
                return {"id": 1000, "is_bot": True, "first_name": "Bench Bot", "username": "bench_bot"}
            return True

        def _keep(self, chat_id: int, msg: dict[str, Any]) -> None:
            chat = self.messages.setdefault(chat_id, {})
            chat.pop(msg["message_id"], None)
            chat[msg["message_id"]] = msg
            while len(chat) > 6:
                chat.pop(next(iter(chat)))

        def button(self, chat_id: int, label: str) -> tuple[dict[str, Any], str]:
            """(message, callback_data) of the newest button whose text contains `label`."""
            for msg in reversed(list(self.messages.get(chat_id, {}).values())):
                for row in (msg.get("reply_markup") or {}).get("inline_keyboard", []):
                    for b in row:
                        if label in b.get("text", "") and "callback_data" in b:
                            return msg, b["callback_data"]
            shown = [m.get("text") or m.get("caption") for m in self.messages.get(chat_id, {}).values()]
            raise LookupError(f"no button {label!r} in chat {chat_id}; its latest messages: {shown}")

    return _Session()


def _user(user_id: int, first_name: str, username: str | None, language_code: str | None) -> dict[str, Any]:
    user: dict[str, Any] = {"id": user_id, "is_bot": False, "first_name": first_name}
    if username is not None:
        user["username"] = username
    if language_code is not None:
        user["language_code"] = language_code
    return user


def message_update(update_id: int, user_id: int, text: str, message_id: int, *, first_name: str = "User",
                   username: str | None = "", language_code: str | None = "en") -> dict[str, Any]:
    """A private-chat text message as Telegram sends it (a leading /command gets its entity)."""
    user = _user(user_id, first_name, f"user{user_id}" if username == "" else username, language_code)
    update: dict[str, Any] = {"update_id": update_id, "message": {
        "message_id": message_id, "date": int(time.time()),
        "chat": {"id": user_id, "type": "private", "first_name": first_name}, "from": user, "text": text}}
    if text.startswith("/"):
        update["message"]["entities"] = [{"type": "bot_command", "offset": 0, "length": len(text.split()[0])}]
    return update


def callback_update(update_id: int, user_id: int, data: str, message: dict[str, Any]) -> dict[str, Any]:
    """A tap on an inline button of `message` (the bot's message, embedded as Telegram does)."""
    user = _user(user_id, "User", f"user{user_id}", "en")
    return {"update_id": update_id, "callback_query": {
        "id": str(update_id), "from": user, "chat_instance": str(user_id), "data": data, "message": message}}
