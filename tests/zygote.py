"""Starts `python -m bot` processes quickly: forked from a zygote that has already imported the heavy packages.

Starting `python -m bot` is slow mostly because importing aiogram builds its pydantic types (seconds on a busy
machine). A zygote interpreter imports those third-party packages once, then forks one child per start; the child
runs the `bot` package's __main__ exactly as `python -m bot` does (the product's own modules are imported fresh in
each child). Each child is a real process of its own, which a test may SIGKILL. Used by tests/test_faults.py (one bot
restarted again and again) and tests/test_cluster.py (several bots at once).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.test_e2e import bot_cwd

# Reads one order per line on stdin, {"env": {...}, "log": path}, and forks a bot with those environment variables
# added and its output appended to that file; prints "pid <pid>" for each fork and "exit <pid> <code>" for each end.
_ZYGOTE = r"""
import json, os, runpy, select, sys
import aiogram, aiogram.methods, aiogram.types, aiohttp, aiosqlite, asyncpg, pydantic, redis
print("ready", flush=True)
pending = b""
while True:
    readable, _, _ = select.select([0], [], [], 0.02)
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        print(f"exit {pid} {os.waitstatus_to_exitcode(status)}", flush=True)
    if not readable:
        continue
    chunk = os.read(0, 65536)
    if not chunk:
        break
    pending += chunk
    while b"\n" in pending:
        line, pending = pending.split(b"\n", 1)
        order = json.loads(line)
        pid = os.fork()
        if pid == 0:
            os.environ.update(order["env"])
            out = os.open(order["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            code = 0
            try:
                runpy.run_module("bot", run_name="__main__", alter_sys=True)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            except BaseException:
                import traceback
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(f"pid {pid}", flush=True)
"""


class ForkedBot:
    """One `python -m bot` process forked by the zygote."""

    def __init__(self, zygote: Zygote, pid: int, log_path: Path) -> None:
        self._zygote = zygote
        self.pid = pid
        self.log_path = log_path

    @property
    def returncode(self) -> int | None:
        """None while it runs; the zygote reaps it, so only the zygote's report says when it has ended."""
        return self._zygote.exits.get(self.pid)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def wait(self, timeout: float = 10) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.returncode is None:
            if loop.time() > deadline:
                raise TimeoutError(f"not within {timeout}s: bot process {self.pid} to exit")
            await asyncio.sleep(0.02)
        return self.returncode

    async def kill(self) -> None:
        """SIGKILL: no cleanup, nothing flushed beyond what the database already committed."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            await self.wait()

    async def stop(self, timeout: float = 10) -> int:
        os.kill(self.pid, signal.SIGTERM)
        return await self.wait(timeout)


class Zygote:
    def __init__(self, proc: asyncio.subprocess.Process, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.exits: dict[int, int] = {}  # pid -> exit code, of every child that has ended
        self._started: asyncio.Queue[int] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def spawn(cls, env: dict[str, str], log_path: Path) -> Zygote:
        """The zygote, run as the bot would be (`env`, in bot_cwd); its own errors go to log_path."""
        with log_path.open("ab") as log:
            proc = await asyncio.create_subprocess_exec(sys.executable, "-c", _ZYGOTE, cwd=bot_cwd(env), env=env,
                                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log)
        return cls(proc, log_path)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            words = raw.decode().split()
            if words[:1] == ["pid"]:
                self._started.put_nowait(int(words[1]))
            elif words[:1] == ["exit"]:
                self.exits[int(words[1])] = int(words[2])

    async def start(self, log_path: Path, **env: str) -> ForkedBot:
        """Fork a bot with `env` on top of the zygote's environment, its output appended to log_path."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"env": env, "log": str(log_path)}).encode() + b"\n")
        await self.proc.stdin.drain()
        try:
            return ForkedBot(self, await asyncio.wait_for(self._started.get(), 30), log_path)
        except TimeoutError:
            raise AssertionError(
                f"the zygote did not fork:\n{self.log_path.read_text(errors='replace')[-3000:]}") from None

    async def close(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        self._reader.cancel()
