"""Magic filters checked in the event loop.

aiogram runs a filter that is not a coroutine function in a worker thread (`asyncio.to_thread`), and a magic filter
such as `F.chat.type == "private"` is one: every check was a thread hop with a context copy, about a dozen per update
of the top-up flow (bench/README.md, issue 13). Resolving `F` is plain attribute access, so `InLoop` does it inline.
"""
from __future__ import annotations

from typing import Any

from aiogram.filters import Filter
from aiogram.types import TelegramObject
from magic_filter import MagicFilter


class InLoop(Filter):
    """`InLoop(F.text)`: the same answer as the bare magic filter (its value, falsy to reject), without the thread."""

    def __init__(self, magic: MagicFilter) -> None:
        self.magic = magic

    async def __call__(self, event: TelegramObject) -> Any:
        return self.magic.resolve(event)

    def __str__(self) -> str:
        return f"InLoop({self.magic!r})"
